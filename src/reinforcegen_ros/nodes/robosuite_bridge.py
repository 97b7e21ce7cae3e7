"""robosuite_bridge node: a task environment as a ROS robot (the simulated stand-in for a Franka driver).

Publishes each control step, stamped with the simulated time: /clock
(rosgraph_msgs/Clock), /joint_states, /eef_pose, /object_poses (privileged,
their own topic), /camera/<name>/image_raw for the configured cameras, /tf
(world -> robot links, grip site, objects) and /sim_state
(reinforcegen_msgs/DemoStep: flattened MuJoCo state, low-dimensional
observation, ground-truth stage termination, and the stage/phase/initiation
pose of the latest /stage_status, so a recorded bag is a set of annotated
source demos for ``reinforcegen bag2demos``).
Subscribes: /stage_status (labels only), /eef_command (reinforcegen_msgs/EefCommand, guarded; stale or
refused commands leave the robot still).
Action: FollowJointTrajectory (control_msgs) at robot.trajectory_action; the
joint waypoints are tracked through the OSC controller (grip-site poses by
forward kinematics), so MoveIt or any planner can execute on it.
Service: ~/reset (reinforcegen_msgs/srv/ResetScene): the scene of a seed (-1:
the next of seed, seed+1, ...); the stage sequencer calls it before each goal.
The clock keeps running forward across resets.
Parameters: task, seed, cameras (list; default none), image_size, config_file,
robot_file. Run it with use_sim_time false: it is the clock.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from control_msgs.action import FollowJointTrajectory
from geometry_msgs.msg import TransformStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rosgraph_msgs.msg import Clock as ClockMsg
from tf2_msgs.msg import TFMessage

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.bridge import BridgeConfig, RobosuiteBridge
from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.geometry import mat_to_quat
from reinforcegen_ros.nodes.common import SENSOR_QOS, TOPIC_CLOCK, BaseNode, fatal, spin, stamp_ns

MIN_TIMER_PERIOD = 0.001  # s: the step timers' shortest period (a min_step_period of 0 steps on commands only)


class RobosuiteBridgeNode(BaseNode):
    def __init__(self):
        super().__init__("robosuite_bridge")
        cfg = dict(self.config.get("bridge") or {})
        cfg["seed"] = self.declare_parameter("seed", int(cfg.get("seed", 0))).value
        cams = self.declare_parameter("cameras", [""]).value
        cfg["cameras"] = [c for c in cams if c] or list(cfg.get("cameras", []))
        cfg["image_size"] = self.declare_parameter("image_size", int(cfg.get("image_size", 84))).value
        cfg["publish_link_tf"] = self.declare_parameter("publish_link_tf", bool(cfg.get("publish_link_tf", True))).value
        try:
            self.core = RobosuiteBridge(self.task, BridgeConfig.from_dict(cfg), CommandGuard(GuardConfig.from_dict(self.config.get("guards"))))
        except ValueError as exc:
            fatal(self, f"bad configuration: {exc}")
        self.lock = threading.RLock()
        self.traj_event = None
        self.traj_done = threading.Event()
        self.pub_clock = self.create_publisher(ClockMsg, TOPIC_CLOCK, 10)
        self.pub_joints = self.create_publisher(self.m.JointState, M.TOPIC_JOINT_STATES, SENSOR_QOS)
        self.pub_eef = self.create_publisher(self.m.PoseStamped, M.TOPIC_EEF_POSE, SENSOR_QOS)
        self.pub_objects = self.create_publisher(self.m.ObjectPoses, M.TOPIC_OBJECT_POSES, SENSOR_QOS)
        self.pub_state = self.create_publisher(self.m.DemoStep, M.TOPIC_SIM_STATE, SENSOR_QOS)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", 100)
        self.pub_images = {c: self.create_publisher(self.m.Image, M.camera_topic(c), SENSOR_QOS) for c in self.core.config.cameras}
        self.create_subscription(self.m.EefCommand, self.robot.get("eef_command_topic", M.TOPIC_EEF_COMMAND), self._on_command, SENSOR_QOS)
        self.labels = (-1, -1, None)  # stage, phase (0 connect, 1 skill), initiation pose of the latest /stage_status
        self.create_subscription(self.m.StageStatus, M.TOPIC_STAGE_STATUS, self._on_status, SENSOR_QOS)
        self.action = ActionServer(
            self, FollowJointTrajectory, self.robot.get("trajectory_action", "/panda_arm_controller/follow_joint_trajectory"),
            execute_callback=self._execute, goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        from rosidl_runtime_py.utilities import get_interface

        self.create_service(get_interface("reinforcegen_msgs/srv/ResetScene"), "~/reset", self._on_reset)
        self._publish(self.core.frame)
        # A step is due min_step_period after the last one (a command answered it, a trajectory runs, or the bridge is
        # fixed-rate) or, lock-step without a command, step_timeout after it (a hold). Both timers restart at every
        # step (_step), so a waiting bridge wakes twice per step instead of polling.
        steady, timers = Clock(clock_type=ClockType.STEADY_TIME), MutuallyExclusiveCallbackGroup()
        self.step_timers = [self.create_timer(max(period, MIN_TIMER_PERIOD), self._on_timer, callback_group=timers, clock=steady)
                            for period in (self.core.config.min_step_period, self.core.config.step_timeout)]
        self.get_logger().info(
            f"robosuite bridge: task '{self.task}', seed {cfg['seed']}, cameras {self.core.config.cameras or 'none'}, "
            f"{'lock-step' if self.core.config.lockstep else 'fixed-rate'} at {self.core.config.control_rate:g} Hz"
        )

    # ------------------------------------------------------------------ inputs
    def _on_command(self, msg) -> None:
        try:
            action = M.action_from_msg(msg)
        except ValueError as exc:
            return self.warn(f"command rejected, holding still: {exc}", "cmd")
        if msg.header.frame_id not in (M.WORLD_FRAME, ""):
            return self.warn(f"command rejected, holding still: unknown frame '{msg.header.frame_id}'", "frame")
        with self.lock:
            check = self.core.on_command(stamp_ns(msg), action)
            ready = check.ok and self.core.ready(time.monotonic())
        if not check.ok:
            return self.warn(f"command rejected, holding still: {check.reason}", check.reason[:20])
        if ready:
            self._step()

    def _on_status(self, msg) -> None:
        """Stage and phase labels for /sim_state, so that recorded simulation bags are annotated source demos."""
        phase = {"predict": 0, "plan": 0, "connect": 0, "skill": 1}.get(str(msg.phase), -1)
        with self.lock:
            self.labels = (int(msg.stage_index), phase, msg.target_pose if phase >= 0 else None)

    def _on_reset(self, request, response):
        """~/reset: the scene of ``request.seed``; a running trajectory ends ("scene reset")."""
        with self.lock:
            event = self.core.cancel_trajectory("scene reset")
            frame, check = self.core.reset_scene(int(request.seed))
            if frame is not None:
                self._publish(frame)  # the new scene's first frame, stamped one period on
            seed, stamp = self.core.seed, self.core.frame.stamp_ns
        if event is not None:
            self.traj_event = event
            self.traj_done.set()
        if check.ok:
            self.get_logger().info(f"scene reset to seed {seed}")
        else:
            self.get_logger().error(f"scene reset refused: {check.reason}")
        return M.reset_scene_response_to_msg(response, check.ok, check.reason, seed, stamp, self.m)

    def add_shutdown_steps(self, plan) -> None:
        def end_trajectory(_):
            with self.lock:
                event = self.core.cancel_trajectory("shutting down")
            if event is not None:
                self.traj_event = event
                self.traj_done.set()

        def release(left):
            if not self.lock.acquire(timeout=max(left, 0.01)):
                return False
            try:
                self.core.close()
            finally:
                self.lock.release()

        plan.add("end trajectory", end_trajectory)
        plan.add("release simulator", release)

    # ------------------------------------------------------------------ stepping
    def _on_timer(self) -> None:
        with self.lock:
            ready = self.core.ready(time.monotonic())
        if ready:
            self._step()

    def _step(self) -> None:
        with self.lock:  # publishing inside the lock keeps /clock and the stamps monotonic
            if self.core.closed or not self.core.ready(time.monotonic()):
                return
            frame = self.core.step(time.monotonic())
            for timer in self.step_timers:
                timer.reset()
            self._publish(frame)
        if frame.trajectory is not None:
            self.traj_event = frame.trajectory
            self.traj_done.set()

    def _publish(self, f) -> None:
        m, t = self.m, f.stamp_ns
        self.pub_clock.publish(ClockMsg(clock=M.stamp_to_msg(t, m)))
        self.pub_joints.publish(M.joint_state_to_msg(f.joint_pos, f.gripper_qpos, t, m))
        self.pub_eef.publish(M.pose_stamped_to_msg(f.eef_pose, t, m))
        self.pub_objects.publish(M.object_poses_to_msg(f.object_poses, t, m))
        stage, phase, target = self.labels
        keys = [k for k, v in f.observation.items() if np.ndim(v) == 1]
        state = m.DemoStep(
            header=M.header_to_msg(t, m), step=int(f.step), stage_index=stage, phase=phase, state=m.float64s(f.sim_state),
            stage_done=m.bools(f.stage_done), reward=float(f.success),
            initiation_pose=target if target is not None else M.pose_to_msg(f.eef_pose, m),
            obs_names=M.strings(keys), obs_sizes=m.uint32s([np.size(f.observation[k]) for k in keys]),
            obs=m.float64s(np.concatenate([np.asarray(f.observation[k], dtype=float) for k in keys])),
        )
        self.pub_state.publish(state)
        self.pub_tf.publish(TFMessage(transforms=[self._transform(child, pose, t) for child, pose in f.tf.items()]))
        for cam, img in f.images.items():
            self.pub_images[cam].publish(M.image_to_msg(img, t, m, frame_id=cam))

    def _transform(self, child: str, pose: np.ndarray, t: int) -> TransformStamped:
        tf = TransformStamped()
        tf.header = M.header_to_msg(t, self.m)
        tf.child_frame_id = child
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in pose[:3, 3])
        q = mat_to_quat(pose[:3, :3])
        tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = (float(v) for v in q)
        return tf

    # ------------------------------------------------------------------ FollowJointTrajectory
    def _on_goal(self, goal) -> GoalResponse:
        traj = goal.trajectory
        positions = [list(p.positions) for p in traj.points]
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in traj.points]
        with self.lock:
            check = self.core.start_trajectory(list(traj.joint_names), positions, times)
        if not check.ok:
            self.get_logger().error(f"trajectory refused: {check.reason}")
            return GoalResponse.REJECT
        self.traj_event = None
        self.traj_done.clear()
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        result = FollowJointTrajectory.Result()
        names = list(M.ARM_JOINT_NAMES)
        while not self.traj_done.wait(0.05):
            if goal_handle.is_cancel_requested:
                with self.lock:
                    self.traj_event = self.core.cancel_trajectory("canceled")
                self.traj_done.set()
                break
            fb = FollowJointTrajectory.Feedback()
            fb.joint_names = names
            with self.lock:
                fb.actual.positions = [float(v) for v in self.core.frame.joint_pos]
            goal_handle.publish_feedback(fb)
        event = self.traj_event
        result.error_string = f"{event.reason}; final joint error {np.abs(event.error).max():.3f} rad (OSC tracks the grip site)"
        try:
            if event.success:
                result.error_code = FollowJointTrajectory.Result.SUCCESSFUL
                goal_handle.succeed()
            else:
                result.error_code = FollowJointTrajectory.Result.GOAL_TOLERANCE_VIOLATED
                goal_handle.canceled() if goal_handle.is_cancel_requested else goal_handle.abort()
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().warning(f"could not report the trajectory's end: {exc}")
        return result


def main(args=None) -> None:
    spin(RobosuiteBridgeNode, args, threads=3)


if __name__ == "__main__":
    main()
