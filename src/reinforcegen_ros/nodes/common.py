"""Shared node plumbing: parameters, configuration, message classes, stamps, the sensor subscriptions, shutdown.

On SIGINT every node runs :func:`shutdown_node`: its timers stop, its own steps
run (:meth:`BaseNode.add_shutdown_steps`: end a goal, join the planning thread,
release the simulator), the executor and the node are shut down, all under
``deployment.lifecycle.SHUTDOWN_DEADLINE``; a daemon timer ends the process at
``EXIT_DEADLINE`` (< 2 s) if anything hangs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.config import load_deployment_config
from reinforcegen_ros.deployment.lifecycle import EXIT_DEADLINE, SHUTDOWN_DEADLINE, ShutdownPlan, exit_after
from reinforcegen_ros.deployment.observation import SensorCache

TOPIC_PREDICTED_POSE = "/pose_predictor/pose"
TOPIC_PLANNED_PATH = "/pose_predictor/path"
TOPIC_PLANNING_STATUS = "/pose_predictor/planning_status"
TOPIC_SKILL_COMMAND = "/skill_policy/command"
TOPIC_TERMINATION_STATUS = "/termination/status"
TOPIC_TERMINATION_PROBABILITY = "/termination/probability"
TOPIC_TERMINATION_ACCEPTED = "/termination/accepted"
TOPIC_EMERGENCY_STOP = "/emergency_stop"
TOPIC_STATUS_MARKER = "/stage_status/marker"
TOPIC_CLOCK = "/clock"
TOPIC_DIAGNOSTICS = "/diagnostics"
ACTION_EXECUTE_TASK = "/execute_task"

SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def share_dir() -> Path:
    """The package's share directory when installed by colcon, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("reinforcegen_ros"))
    except Exception:  # noqa: BLE001 - not installed with colcon: run from the source tree
        return Path(__file__).resolve().parents[3]


def default_config_file() -> str:
    return str(share_dir() / "config" / "ros" / "deployment.yaml")


def msg_classes() -> M.MsgClasses:
    """rclpy message classes for :mod:`reinforcegen_ros.messages`."""
    from rosidl_runtime_py.utilities import get_message

    return M.MsgClasses.from_ros(get_message)


def stamp_ns(msg) -> int:
    """Header stamp of a message in nanoseconds."""
    return M.stamp_from_msg(msg.header.stamp)


def now_ns(node: Node) -> int:
    return int(node.get_clock().now().nanoseconds)


class BaseNode(Node):
    """A node with the common parameters (``task``, ``config_file``, ``robot_file``) and the loaded configuration."""

    def __init__(self, name: str):
        super().__init__(name)
        self.task = self.declare_parameter("task", "coffee").value
        config_file = self.declare_parameter("config_file", default_config_file()).value
        robot_file = self.declare_parameter("robot_file", "").value
        if robot_file and not os.path.isabs(robot_file):
            robot_file = str(share_dir() / "config" / "ros" / robot_file)
        self.config = load_deployment_config(config_file, robot_file or None)
        self.robot = self.config.get("robot") or {}
        self.m = msg_classes()
        self._warned: dict[str, int] = {}

    def add_shutdown_steps(self, plan: ShutdownPlan) -> None:
        """The node's own shutdown steps (after its timers stopped, before the executor stops); none by default."""

    def warn(self, reason: str, key: str = "", every: float = 2.0) -> None:
        """Log ``reason`` at most every ``every`` seconds per ``key``."""
        t = now_ns(self)
        if t - self._warned.get(key, -(10**18)) >= every * 1e9:
            self._warned[key] = t
            self.get_logger().warning(reason)


def subscribe_sensors(node: BaseNode, cache: SensorCache, on_update=None) -> None:
    """Feed ``cache`` from /joint_states, /eef_pose, /object_poses (if needed) and the cameras' image topics."""

    def joints(msg):
        try:
            q, g = M.joint_state_from_msg(msg)
        except ValueError as exc:
            return node.warn(f"joint state rejected: {exc}", "joints")
        check = cache.put_joints(stamp_ns(msg), q, g)
        if not check.ok:
            return node.warn(f"joint state rejected: {check.reason}", "joints")
        if on_update:
            on_update()

    def eef(msg):
        p, o = msg.pose.position, msg.pose.orientation
        check = cache.put_eef(stamp_ns(msg), [p.x, p.y, p.z], [o.x, o.y, o.z, o.w], msg.header.frame_id)
        if not check.ok:
            return node.warn(check.reason, "eef")
        if on_update:
            on_update()

    def objects(msg):
        if len(msg.names) != len(msg.poses):
            return node.warn("object poses rejected: names and poses differ in number", "objects")
        poses = {
            str(n): ([p.position.x, p.position.y, p.position.z], [p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
            for n, p in zip(msg.names, msg.poses)
        }
        check = cache.put_objects(stamp_ns(msg), poses, msg.header.frame_id)
        if not check.ok:
            node.warn(check.reason, "objects")

    node.create_subscription(node.m.JointState, M.TOPIC_JOINT_STATES, joints, SENSOR_QOS)
    node.create_subscription(node.m.PoseStamped, M.TOPIC_EEF_POSE, eef, SENSOR_QOS)
    if cache.need_objects:
        node.create_subscription(node.m.ObjectPoses, M.TOPIC_OBJECT_POSES, objects, SENSOR_QOS)
    for cam in cache.cameras:

        def image(msg, cam=cam):
            try:
                img = M.image_from_msg(msg)
            except ValueError as exc:
                return node.warn(f"image of '{cam}' rejected: {exc}", f"image:{cam}")
            check = cache.put_image(cam, stamp_ns(msg), img)
            if not check.ok:
                node.warn(check.reason, f"image:{cam}")

        node.create_subscription(node.m.Image, M.camera_topic(cam), image, SENSOR_QOS)


def init_rclpy(args=None) -> None:
    """rclpy without its own signal handlers, so that SIGINT (Ctrl-C, ``ros2 launch``) and SIGTERM
    (``docker stop``, systemd) stop the node in order.

    rclpy's handler invalidates the context first; a timer callback still running then fails to publish
    ("publisher's context is invalid"). Here either signal raises KeyboardInterrupt, which ends :func:`spin`,
    and :func:`shutdown_node` stops the timers and the executor while the context is still valid. The
    handlers are installed even where the process started with SIGINT ignored (a background job of a
    script), which Python would otherwise leave ignored.
    """
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # an rclpy without signal handler options (before Humble)
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_on_signal)


def _stop_on_signal(signum, _frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # the ordered shutdown runs under its own deadline: a second signal waits
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def spin(node_factory, args=None, threads: int = 2, wake_s: float = 0.1) -> None:
    """Create the node, spin it on a multi-threaded executor, shut down cleanly (within 2 s) on Ctrl-C.

    The executor waits at most ``wake_s`` at a time, so Ctrl-C is seen even when no message arrives.
    """
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    init_rclpy(args)
    node = executor = None
    try:
        node = node_factory()
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=wake_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as exc:
        if node is None and exc.code:
            print(exc.code, file=sys.stderr)
        raise
    finally:
        if node is not None:
            shutdown_node(node, executor)
        if rclpy.ok():
            rclpy.shutdown()
    end_process()


def end_process(code: int = 0) -> None:
    """End the node's process now that its shutdown is done.

    Python's own teardown after that (torch's above all: 0.2-0.9 s on an idle machine, 2-3 s measured
    under ``ros2 launch`` on a loaded one) holds nothing of the node's, and would put the process past the
    2 s a launch file gives it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shutdown_node(node: BaseNode, executor=None) -> None:
    """Timers, the node's own steps, executor and node, under the shutdown deadline; the process ends by EXIT_DEADLINE."""
    name = node.get_name()
    exit_after(EXIT_DEADLINE, 0, f"[{name}] shutdown did not finish within {EXIT_DEADLINE:g} s: exiting")
    plan = ShutdownPlan(SHUTDOWN_DEADLINE)
    plan.add("stop timers", lambda _: [timer.cancel() for timer in list(node.timers)])
    node.add_shutdown_steps(plan)
    if executor is not None:
        plan.add("stop executor", lambda left: executor.shutdown(timeout_sec=max(left, 0.01)))
    plan.add("destroy node", lambda _: node.destroy_node())
    report = plan.run()
    print(f"[{name}] {report.summary()}", file=sys.stderr if not report.ok else sys.stdout, flush=True)


def fatal(node: Node, reason: str) -> None:
    """Log a configuration error and stop the node (exit status 1)."""
    node.get_logger().fatal(reason)
    raise SystemExit(1)


def finite(values) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, dtype=float))))
