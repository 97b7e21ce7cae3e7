"""termination node: the active stage's termination probability and the accepted/rejected decision.

Subscribes: /stage_status and the agent's observation topics.
Publishes, for each status in the ``skill`` phase with fresh inputs, stamped
with the status it answers: /termination/status (reinforcegen_msgs/StageStatus
with the stage and ``termination_probability``; what the sequencer uses),
/termination/probability (std_msgs/Float64) and /termination/accepted
(std_msgs/Bool: probability above the threshold on this tick, i.e. the stage end
is accepted; the sequencer's executor ends the stage after
``termination_confirm_ticks`` consecutive acceptances, config/hybrid.yaml).
Parameters: task, agent, threshold (default: the hybrid executor's
termination_threshold), config_file, robot_file.
"""

from __future__ import annotations

from std_msgs.msg import Bool, Float64

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.components import TerminationCore
from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.nodes.common import (
    TOPIC_TERMINATION_ACCEPTED, TOPIC_TERMINATION_PROBABILITY, TOPIC_TERMINATION_STATUS, spin,
)
from reinforcegen_ros.nodes.component import ComponentNode
from reinforcegen_ros.tasks import task_config


class TerminationNode(ComponentNode):
    PHASES = ("skill",)

    def __init__(self):
        super().__init__("termination")
        default = HybridConfig.load(task_config(self.task)).termination_threshold
        threshold = self.declare_parameter("threshold", float(default)).value
        self.core = TerminationCore(self.agent, threshold) if self.agent is not None else None
        self.pub_status = self.create_publisher(self.m.StageStatus, TOPIC_TERMINATION_STATUS, 10)
        self.pub_prob = self.create_publisher(Float64, TOPIC_TERMINATION_PROBABILITY, 10)
        self.pub_accepted = self.create_publisher(Bool, TOPIC_TERMINATION_ACCEPTED, 10)
        if self.agent is not None:
            self.get_logger().info(f"termination classifier for '{self.task}' ready (threshold {threshold})")

    def answer(self, status, obs, stage, stamp) -> None:
        est = self.core.estimate(obs, stage)
        if est.reason:
            return self.warn(f"no estimate: {est.reason}", "term")
        self.pub_status.publish(M.stage_status_to_msg(
            stamp, stage, status.stage_name, "skill", self.m, termination_probability=est.probability,
        ))
        self.pub_prob.publish(Float64(data=est.probability))
        self.pub_accepted.publish(Bool(data=est.accepted))


def main(args=None) -> None:
    spin(TerminationNode, args)


if __name__ == "__main__":
    main()
