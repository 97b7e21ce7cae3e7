"""The ROS 2 graph of hybrid.launch.py with robosuite_bridge and a tiny trained agent (needs ROS 2 + a colcon build).

Skipped (``conftest.py`` names what is missing) where a ROS piece does not
import (CI has no ROS) or where the workspace was not built (the README's
``colcon build`` and ``source install/setup.bash``).
"""

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_support import graph_description, include, launch_pytest, rclpy, wait_for  # noqa: E402  (skips this module without ROS)
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402

try:  # rosbag2's command line (`ros2 bag`), which record.launch.py runs; not every ROS 2 install has it
    get_package_share_directory("ros2bag")
    NO_BAG = ""
except PackageNotFoundError:
    NO_BAG = "ros2bag (rosbag2's `ros2 bag`) is not installed, so record.launch.py cannot record: the recording test skips"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deployment_support import TASK, source_demos, tiny_agent  # noqa: E402

GOAL_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ros_agent")
    return tiny_agent(source_demos(root / "source.hdf5", 2), root / "hsp")


@pytest.fixture(scope="module")
def bag_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bags") / "run"


@launch_pytest.fixture(scope="module")
def graph(agent_dir, bag_dir):
    hybrid = include("hybrid.launch.py", task=TASK, agent=str(agent_dir), planner="ompl", rviz="false", seed="0")
    record = include("record.launch.py", output=str(bag_dir), cameras="")
    return graph_description(hybrid, *([] if NO_BAG else [record]))


class Client:
    """A test node: stage status, joint states, the ExecuteTask and FollowJointTrajectory clients."""

    def __init__(self):
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from reinforcegen_msgs.action import ExecuteTask
        from diagnostic_msgs.msg import DiagnosticArray
        from reinforcegen_msgs.msg import DemoStep, EefCommand, EpisodeMarker, StageStatus
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool

        rclpy.init()
        self.node = rclpy.create_node("hybrid_launch_test")
        self.statuses, self.joints, self.diagnostics, self.sim_steps, self.episodes = [], [], [], [], []
        self.node.create_subscription(StageStatus, "/stage_status", self.statuses.append, 100)
        self.node.create_subscription(JointState, "/joint_states", self.joints.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.node.create_subscription(DemoStep, "/sim_state", lambda m: self.sim_steps.append((m.header.stamp, m.step, m.state[:])), 100)
        self.node.create_subscription(EpisodeMarker, "/episode", self.episodes.append, 10)
        self.estop = self.node.create_publisher(Bool, "/emergency_stop", 10)
        self.command = self.node.create_publisher(EefCommand, "/eef_command", 10)
        self.execute = ActionClient(self.node, ExecuteTask, "/execute_task")
        self.follow = ActionClient(self.node, FollowJointTrajectory, "/panda_arm_controller/follow_joint_trajectory")
        self.ExecuteTask, self.FollowJointTrajectory, self.Bool, self.EefCommand = ExecuteTask, FollowJointTrajectory, Bool, EefCommand
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait(self, future, timeout):
        return wait_for(future, timeout)

    def send(self, task, time_limit=0.0, seed=-1):
        assert self.execute.wait_for_server(timeout_sec=GOAL_TIMEOUT), "no /execute_task server"
        return self.wait(self.execute.send_goal_async(self.ExecuteTask.Goal(task=task, time_limit=time_limit, seed=seed)), 10)

    def goal_statuses(self, since):
        """Statuses of the goal sent after ``since`` statuses were in (the idle ones left out)."""
        return [st for st in self.statuses[since:] if st.phase != "idle"]

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


@pytest.mark.launch(fixture=graph)
def test_bridge_survives_bad_commands_and_executes_joint_trajectories(client):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    end = time.monotonic() + GOAL_TIMEOUT
    while not client.joints and time.monotonic() < end:  # the graph is starting
        time.sleep(0.1)
    assert client.joints, "no /joint_states from the bridge"
    for frame, x in (("map", 0.1), ("world", 9.0)):  # unknown frame; far outside [-1, 1]
        bad = client.EefCommand()
        bad.header.frame_id = frame
        bad.header.stamp = client.joints[-1].header.stamp
        bad.delta.linear.x = x
        client.command.publish(bad)
    n = len(client.joints)
    time.sleep(1.0)
    assert len(client.joints) > n, "the bridge stopped publishing after bad commands"
    last = client.joints[-1]
    names = [f"panda_joint{i}" for i in range(1, 8)]
    q = [last.position[list(last.name).index(j)] for j in names]
    traj = JointTrajectory(joint_names=names)
    for k in range(1, 11):
        traj.points.append(JointTrajectoryPoint(positions=[v + 0.01 * k * (i % 2) for i, v in enumerate(q)], time_from_start=Duration(sec=0, nanosec=100_000_000 * k)))
    assert client.follow.wait_for_server(timeout_sec=10)
    handle = client.wait(client.follow.send_goal_async(client.FollowJointTrajectory.Goal(trajectory=traj)), 10)
    assert handle.accepted
    result = client.wait(handle.get_result_async(), 30).result
    assert result.error_code == client.FollowJointTrajectory.Result.SUCCESSFUL, result.error_string
    broken = JointTrajectory(joint_names=names[:6], points=[JointTrajectoryPoint(positions=q[:6])])
    assert not client.wait(client.follow.send_goal_async(client.FollowJointTrajectory.Goal(trajectory=broken)), 10).accepted


@pytest.mark.launch(fixture=graph)
def test_goal_runs_stage_status_flows_and_a_result_comes_back(client):
    n = len(client.statuses)
    handle = client.send(TASK, time_limit=15.0)
    assert handle.accepted
    result = client.wait(handle.get_result_async(), GOAL_TIMEOUT).result
    time.sleep(0.5)
    statuses = client.goal_statuses(n)
    phases = [s.phase for s in statuses]
    changes = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]  # a phase lasts one or more ticks
    assert len(statuses) >= 5 and changes[0] == "reset" and changes[1] in ("predict", "plan"), changes[:5]
    assert set(phases) <= {"reset", "predict", "plan", "connect", "skill", "done", "failed"}
    assert "connect" in phases, f"the planned connect motion never started: {sorted(set(phases))}, {result.reason}"
    assert result.reason and result.duration > 0 and result.seed >= 0
    assert result.success == (phases[-1] == "done")
    if not result.success:
        assert statuses[-1].failure_reason == result.reason
    stamps = [s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in client.statuses]
    assert stamps == sorted(stamps) and stamps[0] > 0  # simulated time


@pytest.mark.launch(fixture=graph)
def test_stage_status_is_published_while_idle_and_diagnostics_flow(client):
    time.sleep(2.0)
    n = len(client.statuses)
    time.sleep(2.0)
    idle = client.statuses[n:]
    assert len(idle) >= 10 and all(s.phase == "idle" and s.stage_index == -1 for s in idle), [s.phase for s in idle[:5]]
    stamps = [s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in idle]
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    assert abs(gaps[len(gaps) // 2] - 50_000_000) <= 1_000_000, gaps  # the control rate (20 Hz) in simulated time
    mine = [st for d in client.diagnostics for st in d.status if st.name.startswith("stage_sequencer")]
    assert mine, "no /diagnostics from the stage sequencer"
    values = {kv.key: kv.value for kv in mine[-1].values}
    assert {"tick_rate_hz", "answer_timeouts_total", "planning_latency_ms_max", "emergency_stop"} <= set(values), values
    assert int(values["plans_received"]) >= 1  # the first goal planned


@pytest.mark.launch(fixture=graph)
def test_two_goals_in_a_row_start_from_the_scenes_of_their_seeds(client):
    states = {}
    for seed in (3, 4):
        n_steps = len(client.sim_steps)
        handle = client.send(TASK, time_limit=2.0, seed=seed)
        assert handle.accepted
        result = client.wait(handle.get_result_async(), GOAL_TIMEOUT).result
        assert result.seed == seed and "scene reset failed" not in result.reason, result.reason
        first = [st for st in client.sim_steps[n_steps:] if st[1] == 0]
        assert first, "no /sim_state of a reset scene (step 0)"
        states[seed] = list(first[0][2])
    assert states[3] != states[4]  # different scenes
    handle = client.send(TASK, time_limit=1.0, seed=3)  # seed 3 again: the very same initial state
    assert handle.accepted and client.wait(handle.get_result_async(), GOAL_TIMEOUT).result.seed == 3
    again = [st for st in client.sim_steps if st[1] == 0][-1]
    assert list(again[2]) == states[3]


@pytest.mark.launch(fixture=graph)
def test_goal_for_another_task_is_rejected(client):
    assert not client.send("threading").accepted


@pytest.mark.launch(fixture=graph)
def test_emergency_stop_aborts_and_latches(client):
    n = len(client.statuses)
    handle = client.send(TASK, time_limit=30.0)
    assert handle.accepted
    end = time.monotonic() + 20
    while len([s for s in client.goal_statuses(n) if s.phase not in ("reset",)]) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    client.estop.publish(client.Bool(data=True))
    result = client.wait(handle.get_result_async(), 20).result
    assert not result.success and result.reason == "emergency stop"
    assert not client.send(TASK).accepted  # latched
    client.estop.publish(client.Bool(data=False))


@pytest.mark.launch(fixture=graph, shutdown=True)
def test_recorded_bag_becomes_source_demos(bag_dir):
    from reinforcegen_ros.demos.rosbag import bag_info, bag_to_episodes
    from reinforcegen_ros.tasks import stages

    if NO_BAG:
        pytest.skip(NO_BAG)
    end = time.monotonic() + 20
    while not (bag_dir / "metadata.yaml").exists() and time.monotonic() < end:
        time.sleep(0.2)
    info = bag_info(bag_dir)
    assert {"/eef_command", "/stage_status", "/joint_states", "/eef_pose"} <= set(info["topics"]), info
    episodes = bag_to_episodes(bag_dir, stage_names=[s.name for s in stages(TASK)], task=TASK)
    assert len(episodes) >= 3 and all(ep.attrs.get("source") == "stage_sequencer" for ep in episodes)  # one per goal
    steps = sum(len(ep.actions) for ep in episodes)
    assert steps > 10 and all(len(ep.eef_pose) == len(ep.actions) for ep in episodes)
    assert any((ep.stage >= 0).any() for ep in episodes)  # stage annotations (via /stage_status)
    assert all({"robot0_eef_pos", "robot0_joint_pos", "object"} <= set(ep.obs) for ep in episodes)
    assert all(ep.states.shape[0] == len(ep.actions) and ep.states.shape[1] > 0 for ep in episodes)
