"""pose_predictor node: the active stage's initiation pose at the control rate, planned and re-planned in the background.

Subscribes: /stage_status, /joint_states, /eef_pose, /object_poses (privileged
agents), /camera/<name>/image_raw (visuomotor agents), /sim_state (simulation:
the planning scene of ``planner:=ompl``).
Publishes, for each status in the predict/plan/connect phases (stamped with
the status it answers): /pose_predictor/pose (geometry_msgs/PoseStamped, the
prediction) and, whenever a plan finishes, /pose_predictor/path (nav_msgs/Path
of grip-site poses; an empty path means planning failed; the reason goes to
/pose_predictor/planning_status, a StageStatus with ``failure_reason``, first).
A plan starts at each new stage and whenever the prediction has moved more than
``epsilon`` (hybrid executor setting) from the target of the current plan; it
runs in a worker thread, so predictions keep flowing while it plans.
Parameters: task, agent, planner (ompl | straight_line | moveit), config_file,
robot_file.
"""

from __future__ import annotations

import threading

import numpy as np
from nav_msgs.msg import Path

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.components import PosePredictorCore, SimulationScenePlanner
from reinforcegen_ros.deployment.lifecycle import PlanningWorker
from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.nodes.common import SENSOR_QOS, TOPIC_PLANNED_PATH, TOPIC_PLANNING_STATUS, TOPIC_PREDICTED_POSE, fatal, spin
from reinforcegen_ros.nodes.component import ComponentNode
from reinforcegen_ros.tasks import stages, task_config

PLANNERS = ("ompl", "straight_line", "moveit")


class PosePredictorNode(ComponentNode):
    PHASES = ("predict", "plan", "connect")

    def __init__(self):
        super().__init__("pose_predictor")
        cfg = self.config.get("pose_predictor") or {}
        name = self.declare_parameter("planner", str(cfg.get("planner", "ompl"))).value
        if name not in PLANNERS:
            fatal(self, f"unknown planner '{name}'; choose one of {', '.join(PLANNERS)}")
        hybrid = HybridConfig.load(task_config(self.task))
        planner = self._make_planner(name, cfg)
        refs = [s.reference_object for s in stages(self.task)]
        self.core = PosePredictorCore(self.agent, planner, hybrid.epsilon, hybrid.replan, refs) if self.agent is not None else None
        self.scene_state: np.ndarray | None = None
        self.planner = planner
        self.worker = PlanningWorker(self._plan, name="planner")  # a daemon thread: shutdown never waits long for a plan
        self.lock = threading.Lock()
        self.pub_pose = self.create_publisher(self.m.PoseStamped, TOPIC_PREDICTED_POSE, 10)
        self.pub_path = self.create_publisher(Path, TOPIC_PLANNED_PATH, 10)
        self.pub_failure = self.create_publisher(self.m.StageStatus, TOPIC_PLANNING_STATUS, 10)
        if name != "moveit":
            self.create_subscription(self.m.DemoStep, M.TOPIC_SIM_STATE, self._on_sim_state, SENSOR_QOS)
        if self.agent is not None:
            self.get_logger().info(f"pose predictor for '{self.task}' ready (planner {name}, epsilon {hybrid.epsilon})")

    def _make_planner(self, name: str, cfg: dict):
        if name == "moveit":
            from reinforcegen_ros.deployment.moveit_planner import MoveItPlanner

            try:
                return MoveItPlanner(group=cfg.get("moveit_group", "panda_arm"), tip_link=cfg.get("moveit_tip_link", "panda_hand_tcp"))
            except ImportError as exc:
                fatal(self, str(exc))
        return SimulationScenePlanner(self.task, name, task_config(self.task).get("planning"))

    def _on_sim_state(self, msg) -> None:
        state = np.asarray(msg.state, dtype=float)
        if state.size and np.all(np.isfinite(state)):
            with self.lock:
                self.scene_state = state

    def on_transition(self, stage: int, phase: str) -> None:
        if self.core is not None and (phase in ("done", "failed") or (stage, phase) == (0, "predict")):
            self.core.reset()  # a new goal plans afresh

    def answer(self, status, obs, stage, stamp) -> None:
        with self.lock:
            scene = self.scene_state
        tick = self.core.tick(obs, stage, stamp, scene)
        if tick.pose is None:
            return self.warn(f"no prediction: {tick.reason}", "pose")
        self.pub_pose.publish(M.pose_stamped_to_msg(tick.pose, stamp, self.m))
        if tick.plan is not None:
            self.worker.submit(tick.plan)

    def _plan(self, request) -> None:
        result = self.core.plan(request)
        if self.worker.stopping.is_set():
            return  # shutting down: the node's publishers are going away
        path = Path()
        path.header = M.header_to_msg(request.stamp_ns, self.m)
        if result.trajectory is None:
            self.get_logger().warning(f"stage {request.stage}: {result.reason}")
            self.pub_failure.publish(M.stage_status_to_msg(
                request.stamp_ns, request.stage, "", "plan", self.m, target_pose=request.target, failure_reason=result.reason,
            ))
        else:
            path.poses = [M.pose_stamped_to_msg(p, request.stamp_ns, self.m) for p in result.trajectory.poses]
            self.get_logger().info(f"stage {request.stage}: planned {len(path.poses)} waypoints in {result.seconds * 1e3:.0f} ms")
        self.pub_path.publish(path)

    def add_shutdown_steps(self, plan) -> None:
        plan.add("join planning thread", self.worker.shutdown)
        if hasattr(self.planner, "close"):  # not under a plan still running in the abandoned thread
            plan.add("release planning scene", lambda _: False if self.worker.thread.is_alive() else self.planner.close())

    def destroy_node(self):
        self.worker.shutdown(0.0)
        return super().destroy_node()


def main(args=None) -> None:
    spin(PosePredictorNode, args)


if __name__ == "__main__":
    main()
