"""skill_policy node: base + residual skill policy of the active stage, only while the sequencer runs a skill.

Subscribes: /stage_status, /joint_states, /eef_pose, /object_poses (privileged
agents), /camera/<name>/image_raw (visuomotor agents).
Publishes: /skill_policy/command (reinforcegen_msgs/EefCommand), stamped with
the status it answers, only for statuses in the ``skill`` phase and only with
fresh inputs. The stage sequencer relays it (guarded) to /eef_command.
Parameters: task, agent, residual (policy directory; empty = zero residual),
residual_scale, bound, config_file, robot_file.
"""

from __future__ import annotations

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.components import PolicyResidual, SkillPolicyCore
from reinforcegen_ros.nodes.common import TOPIC_SKILL_COMMAND, spin
from reinforcegen_ros.nodes.component import ComponentNode


class SkillPolicyNode(ComponentNode):
    PHASES = ("skill",)

    def __init__(self):
        super().__init__("skill_policy")
        cfg = self.config.get("skill_policy") or {}
        residual_dir = self.declare_parameter("residual", str(cfg.get("residual", ""))).value
        scale = self.declare_parameter("residual_scale", float(cfg.get("residual_scale", 1.0))).value
        bound = self.declare_parameter("bound", float(cfg.get("bound", 1.0))).value
        residual = None
        if residual_dir and self.agent is not None:
            try:
                residual = PolicyResidual(residual_dir, self.task)
            except ValueError as exc:
                self.get_logger().error(f"residual rejected, running the base policy alone: {exc}")
        self.core = SkillPolicyCore(self.agent, residual, scale, bound) if self.agent is not None else None
        self.pub = self.create_publisher(self.m.EefCommand, TOPIC_SKILL_COMMAND, 10)
        if self.agent is not None:
            self.get_logger().info(f"skill policy for '{self.task}' ready (residual: {residual_dir or 'zeros'}, bound {bound})")

    def on_transition(self, stage: int, phase: str) -> None:
        if self.core is not None and phase == "skill":
            self.core.reset()  # recurrent policies start each skill afresh

    def answer(self, status, obs, stage, stamp) -> None:
        out = self.core.act(obs, stage)
        if out.action is None:
            return self.warn(f"no command: {out.reason}", "act")
        self.pub.publish(M.action_to_msg(out.action, stamp, self.m))


def main(args=None) -> None:
    spin(SkillPolicyNode, args)


if __name__ == "__main__":
    main()
