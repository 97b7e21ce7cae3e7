"""franka_adapter node: the skill's /eef_command on a franka_ros2 robot, in place of robosuite_bridge.

The logic is :class:`reinforcegen_ros.deployment.franka.FrankaCartesianAdapter`; this node only wires it.

Subscribes: /eef_command (reinforcegen_msgs/EefCommand, 20 Hz) and the robot state, ``state_topic`` of
``state_type`` (default franka_ros2's franka_robot_state_broadcaster: franka_msgs/msg/FrankaRobotState,
whose ``state_field`` ``o_t_ee`` is the end effector's pose in the base frame; a geometry_msgs/PoseStamped
(``state_field`` empty) or a column-major 16-value O_T_EE field work as well).
Publishes: /eef_pose (geometry_msgs/PoseStamped in the agent's world frame, what the agent's nodes read),
at each state message; the pose to command (PoseStamped in ``robot.base_frame``) on ``target_topic`` at
``target_rate`` Hz, the adapter's speed- and acceleration-limited path toward the last command (default
``/cartesian_motion_controller/target_frame``: the target of FZI's cartesian_controllers
(cartesian_motion_controller or cartesian_compliance_controller) running in franka_ros2's
ros2_control; a 1 kHz C++ controller may instead run the adapter's ``cycle`` law itself); franka_gripper
Move (open) and Grasp (close) action goals when the gripper command changes sign.
Parameters: config_file, robot_file (default franka.yaml), state_topic, state_type, state_field,
target_topic, target_rate. /joint_states come from franka_ros2's joint_state_broadcaster unchanged.
Never run on a Franka: tested on synthetic messages (test/test_deployment_franka_node.py).
"""

from __future__ import annotations

from rclpy.action import ActionClient

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.franka import FrankaAdapterConfig, FrankaCartesianAdapter, GripperRequest
from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.nodes.common import SENSOR_QOS, BaseNode, fatal, now_ns, spin, stamp_ns

STATE_TOPIC = "/franka_robot_state_broadcaster/robot_state"
STATE_TYPE = "franka_msgs/msg/FrankaRobotState"
TARGET_TOPIC = "/cartesian_motion_controller/target_frame"


def state_pose(msg, field: str):
    """The O_T_EE carried by a state message: a PoseStamped/Pose (4x4) or 16 column-major values."""
    value = getattr(msg, field) if field else msg
    pose = getattr(value, "pose", value)
    if hasattr(pose, "position") and hasattr(pose, "orientation"):
        return M.pose_from_msg(pose)
    return list(value)


class FrankaAdapterNode(BaseNode):
    def __init__(self):
        super().__init__("franka_adapter")
        from rosidl_runtime_py.utilities import get_action, get_message

        robot = self.robot
        if "world_to_base" not in robot:
            fatal(self, "robot.world_to_base is missing: pass robot_file:=franka.yaml (config/ros/franka.yaml)")
        self.base_frame = str(robot.get("base_frame", "panda_link0"))
        self.world_frame = str(robot.get("world_frame", M.WORLD_FRAME))
        self.state_field = self.declare_parameter("state_field", "o_t_ee").value
        state_topic = self.declare_parameter("state_topic", STATE_TOPIC).value
        state_type = self.declare_parameter("state_type", STATE_TYPE).value
        target_topic = self.declare_parameter("target_topic", TARGET_TOPIC).value
        rate = float(self.declare_parameter("target_rate", 100.0).value)
        if not rate > 0:
            fatal(self, f"target_rate must be > 0 Hz, got {rate}")
        adapter_config = FrankaAdapterConfig.from_config(self.config)
        adapter_config.controller_rate = rate  # one cycle of the adapter's path per published target
        self.core = FrankaCartesianAdapter(robot["world_to_base"], CommandGuard(GuardConfig.from_dict(self.config.get("guards"))), adapter_config)
        try:
            state_cls = get_message(state_type)
        except Exception as exc:  # noqa: BLE001 - a type that is not installed
            fatal(self, f"state_type '{state_type}' is not available ({exc}): install franka_msgs or set state_type")
        self.pub_eef = self.create_publisher(self.m.PoseStamped, M.TOPIC_EEF_POSE, SENSOR_QOS)
        self.pub_target = self.create_publisher(self.m.PoseStamped, target_topic, 10)
        self.gripper = {}  # action name -> (client, action type); empty without franka_msgs
        try:
            for name, kind in (("move", "Move"), ("grasp", "Grasp")):
                action_type = get_action(f"franka_msgs/action/{kind}")
                server = robot.get(f"gripper_{name}_action", f"/panda_gripper/{name}")
                self.gripper[name] = (ActionClient(self, action_type, server), action_type)
        except Exception as exc:  # noqa: BLE001 - franka_msgs not installed
            self.gripper = {}
            self.get_logger().error(f"franka_msgs' gripper actions are not available ({exc}): gripper commands will be dropped")
        self.create_subscription(state_cls, state_topic, self._on_state, SENSOR_QOS)
        self.create_subscription(self.m.EefCommand, M.TOPIC_EEF_COMMAND, self._on_command, 10)
        self.create_timer(1.0 / rate, self._on_cycle)
        self.get_logger().info(f"franka adapter: {state_topic} -> {M.TOPIC_EEF_POSE}; {M.TOPIC_EEF_COMMAND} -> {target_topic} at {rate:g} Hz")

    def _on_state(self, msg) -> None:
        try:
            o_t_ee = state_pose(msg, self.state_field)
        except (AttributeError, TypeError, ValueError) as exc:
            return self.warn(f"robot state rejected: {exc}", "state")
        check = self.core.on_state(stamp_ns(msg), o_t_ee)
        if not check.ok:
            return self.warn(check.reason, "state")
        self.pub_eef.publish(M.pose_stamped_to_msg(self.core.eef_pose_world(), stamp_ns(msg), self.m, self.world_frame))

    def _on_command(self, msg) -> None:
        try:
            action = M.action_from_msg(msg)
        except ValueError as exc:
            return self.warn(f"command rejected: {exc}", "command")
        check, request = self.core.on_command(stamp_ns(msg), action)
        if not check.ok:
            return self.warn(f"command rejected: {check.reason}", "command")
        if request is not None:
            self._send_gripper(request)

    def _send_gripper(self, request: GripperRequest) -> None:
        if request.action not in self.gripper:
            return self.warn(f"gripper {request.action} dropped: no franka_msgs", "gripper")
        client, action_type = self.gripper[request.action]
        goal = action_type.Goal()
        goal.width, goal.speed = float(request.width), float(request.speed)
        if request.action == "grasp":
            goal.force = float(request.force)
            goal.epsilon.inner = goal.epsilon.outer = float(self.core.config.gripper_max_width)  # any width counts as grasped
        if not client.server_is_ready():
            return self.warn(f"gripper {request.action} action server not available", "gripper")
        client.send_goal_async(goal)

    def _on_cycle(self) -> None:
        now = now_ns(self)
        pose = self.core.cycle(now)
        if pose is not None:
            self.pub_target.publish(M.pose_stamped_to_msg(pose, now, self.m, self.base_frame))


def main(args=None) -> None:
    spin(FrankaAdapterNode, args)


if __name__ == "__main__":
    main()
