"""hybrid.launch.py and record.launch.py compose the right actions (needs ROS 2's launch packages, no running graph)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="ROS 2 (launch_ros) is not installed: these tests run on a machine with ROS 2 Jazzy or Humble")
import launch  # noqa: E402  (ROS 2's; the repository's launch/ folder is only a namespace package)

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402

try:
    SHARE = Path(get_package_share_directory("reinforcegen_ros"))
except PackageNotFoundError:
    pytest.skip("reinforcegen_ros is not built: run colcon build and source install/setup.bash", allow_module_level=True)

DEFAULTS = {"robot": "sim", "task": "coffee", "agent": "", "planner": "ompl", "rviz": "false", "use_sim_time": "auto",
            "seed": "0", "cameras": "", "config_file": "", "residual": "", "output": "bag", "storage": "mcap"}


def compose(name: str, **args):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), SHARE / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = launch.LaunchContext()
    context.launch_configurations.update({**DEFAULTS, **args})
    return module, (module._setup if hasattr(module, "_setup") else module._record)(context)


def executables(actions):
    return [getattr(a, "node_executable", None) for a in actions]


def _text(value):
    """Plain value of a normalised launch parameter (substitution tuples become strings)."""
    if isinstance(value, (tuple, list)) and value and all(hasattr(v, "text") for v in value):
        return "".join(v.text for v in value)
    return value


def params(action) -> dict:
    out = {}
    for p in action._Node__parameters:
        out.update({_text(k): _text(v) for k, v in p.items()})
    return out


def test_sim_launch_starts_the_bridge_and_the_four_nodes_on_sim_time():
    module, actions = compose("hybrid.launch.py", agent="/tmp/agent", seed="3")
    assert executables(actions)[:5] == ["robosuite_bridge", "stage_sequencer", "pose_predictor", "skill_policy", "termination"]
    assert len(module.generate_launch_description().entities) > 5
    bridge, sequencer = params(actions[0]), params(actions[1])
    assert bridge["seed"] == 3 and bridge["use_sim_time"] is False
    assert sequencer["use_sim_time"] is True and "config/ros/sim.yaml" in sequencer["robot_file"]


def test_franka_launch_has_no_bridge_and_places_the_base_in_the_world():
    _, actions = compose("hybrid.launch.py", robot="franka")
    exe = executables(actions)
    assert "robosuite_bridge" not in exe and "static_transform_publisher" in exe and "franka_adapter" in exe
    assert params(actions[exe.index("stage_sequencer")])["use_sim_time"] is False
    assert "config/ros/franka.yaml" in params(actions[exe.index("franka_adapter")])["robot_file"]


def test_unknown_robot_is_an_error():
    with pytest.raises(RuntimeError, match="robot must be sim or franka"):
        compose("hybrid.launch.py", robot="ur5")


def test_record_launch_records_mcap_with_the_data_generation_topics():
    _, actions = compose("record.launch.py", cameras="agentview", use_sim_time="true")
    cmd = ["".join(s.perform(launch.LaunchContext()) for s in part) if isinstance(part, list) else part for part in actions[0].cmd]
    assert cmd[:5] == ["ros2", "bag", "record", "-s", "mcap"]
    assert {"/eef_command", "/eef_pose", "/stage_status", "/sim_state", "/camera/agentview/image_raw"} <= set(cmd)


def test_rviz_without_rviz2_and_no_agent_are_reported_not_fatal():
    from launch.actions import LogInfo

    from ament_index_python.packages import get_package_share_directory as share

    _, actions = compose("hybrid.launch.py", rviz="true")
    logs = [a for a in actions if isinstance(a, LogInfo)]
    try:
        share("rviz2")
        assert "rviz2" in executables(actions)
    except PackageNotFoundError:
        assert any("rviz2 is not installed" in "".join(s.text for s in log.msg) for log in logs)
    assert any("no agent given" in "".join(s.text for s in log.msg) for log in logs)
