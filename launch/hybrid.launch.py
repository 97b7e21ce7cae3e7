"""Launch the hybrid skill policy on a robot: stage sequencer, pose predictor, skill policy, termination (+ bridge).

    ros2 launch reinforcegen_ros hybrid.launch.py task:=coffee agent:=runs/coffee/hsp planner:=ompl rviz:=false

Arguments: robot (sim: robosuite_bridge is started and publishes /clock;
franka: a franka_ros2 bringup must already provide the topic contract of
docs/ROS_INTERFACES.md), task, agent (hybrid skill policy directory),
planner (ompl | straight_line | moveit), rviz, use_sim_time (default: true
for sim), seed (scene of the simulation), config_file, residual.
Send a goal with:
    ros2 action send_goal /execute_task reinforcegen_msgs/action/ExecuteTask "{task: coffee}" --feedback
"""

import json
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "reinforcegen_ros"


def _share() -> str:
    from ament_index_python.packages import get_package_share_directory

    return get_package_share_directory(PACKAGE)


def _installed(package: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory(package)
        return True
    except PackageNotFoundError:
        return False


def _agent_cameras(agent: str) -> list:
    """Cameras a visuomotor agent observes (from its config.json); none for a privileged agent."""
    try:
        with open(os.path.join(agent, "config.json")) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return []
    return list((meta.get("spec") or {}).get("cameras") or [])


def _robot_state_publisher():
    """robot_state_publisher with franka_description's Panda URDF, if franka_description and xacro are installed."""
    if not _installed("franka_description"):
        return None
    try:
        import xacro
    except ImportError:
        return None
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("franka_description")
    for rel in ("robots/panda/panda.urdf.xacro", "robots/panda_arm.urdf.xacro"):
        path = os.path.join(share, rel)
        if os.path.isfile(path):
            urdf = xacro.process_file(path, mappings={"hand": "true"}).toxml()
            return Node(package="robot_state_publisher", executable="robot_state_publisher", parameters=[{"robot_description": urdf}])
    return None


def _setup(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    robot, task, agent, planner = arg("robot"), arg("task"), arg("agent"), arg("planner")
    if robot not in ("sim", "franka"):
        raise RuntimeError(f"robot must be sim or franka, got '{robot}'")
    agent = os.path.abspath(os.path.expanduser(agent)) if agent else ""
    sim_time = arg("use_sim_time")
    use_sim_time = (robot == "sim") if sim_time in ("", "auto") else sim_time.lower() in ("true", "1")
    share = _share()
    config_file = arg("config_file") or os.path.join(share, "config", "ros", "deployment.yaml")
    robot_file = os.path.join(share, "config", "ros", f"{robot}.yaml")
    common = {"task": task, "config_file": config_file, "robot_file": robot_file}
    timed = {**common, "use_sim_time": use_sim_time}
    actions = []
    rsp = _robot_state_publisher()
    if robot == "sim":
        cameras = _agent_cameras(agent) if agent else []
        extra = [c for c in arg("cameras").split(",") if c]
        bridge = {**common, "seed": int(arg("seed")), "publish_link_tf": rsp is None, "use_sim_time": False}
        if cameras or extra:
            bridge["cameras"] = sorted(set(cameras + extra))
        actions.append(Node(package=PACKAGE, executable="robosuite_bridge", name="robosuite_bridge", output="screen", parameters=[bridge]))
    else:
        import yaml

        with open(robot_file) as fh:
            x, y, z, qx, qy, qz, qw = (yaml.safe_load(fh).get("robot") or {}).get("world_to_base")
        actions.append(Node(
            package="tf2_ros", executable="static_transform_publisher", name="world_to_base",
            arguments=["--x", str(x), "--y", str(y), "--z", str(z), "--qx", str(qx), "--qy", str(qy), "--qz", str(qz), "--qw", str(qw),
                       "--frame-id", "world", "--child-frame-id", "panda_link0"],
        ))
        # /eef_command -> the Cartesian controller's target and franka_gripper goals; franka state -> /eef_pose
        actions.append(Node(package=PACKAGE, executable="franka_adapter", name="franka_adapter", output="screen",
                            parameters=[{**common, "use_sim_time": False}]))
    if rsp is not None and robot == "sim":
        actions.append(rsp)
    components = {**timed, "agent": agent}
    actions += [
        Node(package=PACKAGE, executable="stage_sequencer", name="stage_sequencer", output="screen", parameters=[components]),
        Node(package=PACKAGE, executable="pose_predictor", name="pose_predictor", output="screen", parameters=[{**components, "planner": planner}]),
        Node(package=PACKAGE, executable="skill_policy", name="skill_policy", output="screen", parameters=[{**components, "residual": arg("residual")}]),
        Node(package=PACKAGE, executable="termination", name="termination", output="screen", parameters=[components]),
    ]
    if arg("rviz").lower() in ("true", "1"):
        if _installed("rviz2"):
            actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", os.path.join(share, "rviz", "hybrid.rviz")],
                                parameters=[{"use_sim_time": use_sim_time}]))
        else:
            actions.append(LogInfo(msg="rviz2 is not installed; running without it (rviz:=false hides this message)"))
    if not agent:
        actions.append(LogInfo(msg="no agent given (agent:=<dir>): the component nodes will not answer and goals will time out"))
    return actions


def generate_launch_description() -> LaunchDescription:
    args = [
        ("robot", "sim", "sim (robosuite_bridge) | franka (franka_ros2 already running)"),
        ("task", "coffee", "registered task name"),
        ("agent", "", "hybrid skill policy directory (reinforcegen train --out)"),
        ("planner", "ompl", "ompl | straight_line | moveit"),
        ("rviz", "true", "start rviz2 with rviz/hybrid.rviz"),
        ("use_sim_time", "auto", "auto: true for robot:=sim"),
        ("seed", "0", "scene seed of the simulation"),
        ("cameras", "", "extra cameras to render in simulation (comma separated)"),
        ("config_file", "", "deployment settings (default: share/reinforcegen_ros/config/ros/deployment.yaml)"),
        ("residual", "", "residual policy directory (default: a residual of zeros)"),
    ]
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in args] + [OpaqueFunction(function=_setup)])
