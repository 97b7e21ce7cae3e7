"""The franka_adapter node's wiring on the rclpy stand-in (``deployment_support.FakeRos``), with synthetic messages.

Never on a Franka, nor with franka_ros2: the robot state is a geometry_msgs/PoseStamped of O_T_EE (the node's
``state_type``/``state_field`` parameters; franka_ros2's FrankaRobotState carries the same pose in ``o_t_ee``),
and the franka_gripper Move/Grasp actions are stand-ins that record their goals.
"""

import types

import numpy as np
import pytest

from deployment_support import FakeRos
from reinforcegen_ros.deployment.config import CONFIG_DIR
from reinforcegen_ros.deployment.franka import pose_from_list
from reinforcegen_ros.geometry import make_pose

TARGET = "/cartesian_motion_controller/target_frame"
STATE = "/franka_state"


class Goal:
    def __init__(self):
        self.width = self.speed = self.force = 0.0
        self.epsilon = types.SimpleNamespace(inner=0.0, outer=0.0)


def adapter(monkeypatch, **params):
    """The node on FakeRos, the sent gripper goals, and the fake."""
    ros = FakeRos({"franka_adapter": {"config_file": str(CONFIG_DIR / "deployment.yaml"), "robot_file": str(CONFIG_DIR / "franka.yaml"),
                                      "state_topic": STATE, "state_type": "geometry_msgs/msg/PoseStamped", "state_field": "",
                                      "target_rate": 100.0, **params}})
    sent = []

    class ActionClient:
        def __init__(self, node, action_type, name):
            self.name = name

        def server_is_ready(self):
            return True

        def send_goal_async(self, goal):
            sent.append((self.name, goal))

    utilities = ros.modules["rosidl_runtime_py.utilities"]
    interface = utilities.get_action
    utilities.get_action = lambda name: types.SimpleNamespace(Goal=Goal) if name.startswith("franka_msgs/") else interface(name)
    ros.modules["rclpy.action"].ActionClient = ActionClient
    ros.install(monkeypatch)
    from reinforcegen_ros.nodes.franka_adapter import FrankaAdapterNode

    return FrankaAdapterNode(), sent, ros


def publish(ros, node, topic, msg):
    ros.queue.append((topic, msg))
    ros.pump()


def test_state_command_and_gripper_flow_through_the_adapter(monkeypatch):
    from reinforcegen_ros import messages as M

    node, sent, ros = adapter(monkeypatch)
    o_t_ee = make_pose(np.array([0.45, 0.0, 0.4]), np.diag([1.0, -1.0, -1.0]))  # gripper down, base frame
    ros.now_ns = 10**9
    publish(ros, node, STATE, M.pose_stamped_to_msg(o_t_ee, ros.now_ns, node.m, "panda_link0"))
    eef = ros.published[M.TOPIC_EEF_POSE][-1]
    world_T_base = pose_from_list(node.robot["world_to_base"])
    assert eef.header.frame_id == "world" and np.allclose(M.pose_from_msg(eef.pose), world_T_base @ o_t_ee)

    command = M.action_to_msg(np.array([0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]), ros.now_ns, node.m)  # +2 cm in x, close
    publish(ros, node, M.TOPIC_EEF_COMMAND, command)
    assert [name for name, _ in sent] == ["/panda_gripper/grasp"] and sent[0][1].force == pytest.approx(40.0)
    xs = []
    for _ in range(20):  # 0.2 s of 100 Hz targets
        ros.now_ns += 10**7
        ros.fire(node, "_on_cycle")
        target = ros.published[TARGET][-1]
        assert target.header.frame_id == "panda_link0"
        xs.append(M.pose_from_msg(target.pose)[0, 3])
    steps = np.diff([o_t_ee[0, 3], *xs])
    assert np.all(steps >= 0) and xs[-1] > o_t_ee[0, 3] + 0.01  # toward the goal, +x of the world is +x of the base
    assert np.max(steps) <= 0.25 / 100 + 1e-9  # franka.yaml's max_linear_speed per 100 Hz cycle

    publish(ros, node, M.TOPIC_EEF_COMMAND, M.action_to_msg(np.array([0.0] * 6 + [1.0]), ros.now_ns + 1, node.m))
    assert len(sent) == 1  # the gripper command did not change sign: no new goal
    bad = M.action_to_msg(np.zeros(7), ros.now_ns + 2, node.m)
    bad.delta.linear.x = float("nan")
    publish(ros, node, M.TOPIC_EEF_COMMAND, bad)
    assert any("command rejected" in w for w in ros.warnings("franka_adapter"))
    publish(ros, node, M.TOPIC_EEF_COMMAND, M.action_to_msg(np.array([0.0] * 6 + [-1.0]), ros.now_ns + 3, node.m))
    assert [name for name, _ in sent] == ["/panda_gripper/grasp", "/panda_gripper/move"] and sent[1][1].width == pytest.approx(0.08)


def test_without_a_state_commands_are_refused_and_no_target_is_sent(monkeypatch):
    from reinforcegen_ros import messages as M

    node, sent, ros = adapter(monkeypatch)
    ros.now_ns = 10**9
    publish(ros, node, M.TOPIC_EEF_COMMAND, M.action_to_msg(np.array([0.5, 0, 0, 0, 0, 0, 1.0]), ros.now_ns, node.m))
    ros.fire(node, "_on_cycle")
    assert sent == [] and TARGET not in ros.published
    assert any("no robot state yet" in w for w in ros.warnings("franka_adapter"))


def test_state_pose_reads_franka_state_layouts():
    from reinforcegen_ros.deployment.franka import to_column_major
    from reinforcegen_ros.nodes.franka_adapter import state_pose

    pose = types.SimpleNamespace(position=types.SimpleNamespace(x=0.1, y=0.2, z=0.3),
                                 orientation=types.SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0))
    robot_state = types.SimpleNamespace(o_t_ee=types.SimpleNamespace(header=None, pose=pose))  # FrankaRobotState
    assert np.allclose(state_pose(robot_state, "o_t_ee"), make_pose(np.array([0.1, 0.2, 0.3]), np.eye(3)))
    column_major = types.SimpleNamespace(o_t_ee=list(to_column_major(make_pose(np.array([0.4, 0.0, 0.5]), np.eye(3)))))
    assert state_pose(column_major, "o_t_ee")[12:15] == pytest.approx([0.4, 0.0, 0.5])


def test_a_robot_file_without_the_base_pose_stops_the_node(monkeypatch, tmp_path):
    import yaml

    robot = yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())
    del robot["robot"]["world_to_base"]
    (tmp_path / "franka.yaml").write_text(yaml.safe_dump(robot))
    with pytest.raises(SystemExit):
        adapter(monkeypatch, robot_file=str(tmp_path / "franka.yaml"))
