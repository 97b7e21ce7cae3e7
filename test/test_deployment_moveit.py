"""The MoveIt adapter (``deployment/moveit_planner.py``) behind the planner protocol, on a synthetic moveit_py.

No MoveIt here: a stand-in for ``moveit.planning.MoveItPy`` and ``moveit.core.robot_state.RobotState`` records
what the adapter asks for and answers with a synthetic trajectory, in both waypoint forms moveit_py's
bindings give (4x4 transforms, position + quaternion). What never ran: a real move_group and robot model.
"""

import sys
import types

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reinforcegen_ros.deployment import moveit_planner
from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.planning import PlanningFailed, Trajectory

GROUP, TIP = "panda_arm", "panda_hand_tcp"


class Waypoint:
    def __init__(self, joints, transform):
        self.joints, self.transform = np.asarray(joints, dtype=float), transform

    def get_joint_group_positions(self, group):
        assert group == GROUP
        return self.joints

    def get_global_link_transform(self, link):
        assert link == TIP
        return self.transform


class FakeMoveIt:
    """Just enough of moveit_py: one planning component whose plan() returns ``answer``."""

    def __init__(self, answer):
        self.answer, self.calls = answer, {}
        fake = self

        class RobotState:
            def __init__(self, model):
                self.model, self.positions = model, None

            def set_joint_group_positions(self, group, q):
                self.positions = (group, np.array(q))

            def update(self):
                fake.calls["updated"] = True

        class Component:
            def set_start_state(self, robot_state):
                fake.calls["start"] = robot_state.positions

            def set_goal_state(self, pose_stamped_msg, pose_link):
                fake.calls["goal"] = (pose_stamped_msg, pose_link)

            def plan(self):
                return fake.answer

        class MoveItPy:
            def __init__(self, node_name):
                fake.calls["node"] = node_name

            def get_planning_component(self, group):
                fake.calls["group"] = group
                return Component()

            def get_robot_model(self):
                return "panda model"

        self.modules = {
            "moveit": types.ModuleType("moveit"),
            "moveit.planning": types.SimpleNamespace(MoveItPy=MoveItPy),
            "moveit.core": types.ModuleType("moveit.core"),
            "moveit.core.robot_state": types.SimpleNamespace(RobotState=RobotState),
            "geometry_msgs": types.ModuleType("geometry_msgs"),
            "geometry_msgs.msg": types.SimpleNamespace(PoseStamped=PoseStamped),
        }


class PoseStamped:
    def __init__(self):
        self.header = types.SimpleNamespace(frame_id="")
        self.pose = types.SimpleNamespace(position=types.SimpleNamespace(x=0.0, y=0.0, z=0.0),
                                          orientation=types.SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0))


def planner_with(monkeypatch, answer) -> tuple[moveit_planner.MoveItPlanner, FakeMoveIt]:
    fake = FakeMoveIt(answer)
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return moveit_planner.MoveItPlanner(group=GROUP, tip_link=TIP), fake


def test_without_moveit_py_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "moveit", None)  # import fails as where moveit_py is not installed
    monkeypatch.setitem(sys.modules, "moveit.planning", None)
    with pytest.raises(ImportError, match="moveit_py.*planner:=ompl"):
        moveit_planner.MoveItPlanner()


@pytest.mark.parametrize("form", ["matrix", "pos_quat"])
def test_plan_sends_start_and_goal_and_returns_the_tip_poses(monkeypatch, form):
    rot = Rotation.from_euler("xyz", [3.0, 0.2, -0.4]).as_matrix()
    target = make_pose(np.array([0.5, -0.1, 1.0]), rot)
    start = np.linspace(-0.5, 0.5, 7)
    waypoints = []
    for i, s in enumerate(np.linspace(0.0, 1.0, 5)):
        pose = make_pose(np.array([0.4, 0.0, 1.2]) * (1 - s) + target[:3, 3] * s, rot)
        tf = pose if form == "matrix" else np.concatenate([pose[:3, 3], Rotation.from_matrix(rot).as_quat()])
        waypoints.append(Waypoint(start + 0.01 * i, tf))
    answer = types.SimpleNamespace(trajectory=waypoints)  # a list: the len()/[] form of a trajectory
    planner, fake = planner_with(monkeypatch, answer)
    traj = planner.plan(start, target)

    assert fake.calls["group"] == GROUP and fake.calls["updated"]
    group, q = fake.calls["start"]
    assert group == GROUP and np.allclose(q, start)
    goal, link = fake.calls["goal"]
    assert link == TIP and goal.header.frame_id == "world"
    p, o = goal.pose.position, goal.pose.orientation
    assert np.allclose([p.x, p.y, p.z], target[:3, 3])
    assert np.allclose(Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix(), rot)
    assert isinstance(traj, Trajectory) and traj.poses.shape == (5, 4, 4) and traj.joints.shape == (5, 7)
    assert np.allclose(traj.poses[:-1], [make_pose(np.array([0.4, 0.0, 1.2]) * (1 - s) + target[:3, 3] * s, rot)
                                         for s in np.linspace(0.0, 1.0, 5)[:-1]])
    assert np.array_equal(traj.poses[-1], target)  # the last waypoint is the exact target
    assert np.allclose(traj.joints[2], start + 0.02)


def test_no_plan_and_an_empty_plan_are_planning_failures(monkeypatch):
    planner, fake = planner_with(monkeypatch, None)
    with pytest.raises(PlanningFailed, match="no plan"):
        planner.plan(np.zeros(7), np.eye(4))
    fake.answer = types.SimpleNamespace(trajectory=[])
    with pytest.raises(PlanningFailed, match="empty trajectory"):
        planner.plan(np.zeros(7), np.eye(4))
