"""Base of the three component nodes: an agent, its observation inputs, and an answer to each stage status.

A component node answers every ``/stage_status`` message whose phase concerns
it with one core call on the latest observation, stamped with the status
stamp (so the stage sequencer knows which stage and tick it answers). A
status with stale inputs gets no answer (the sequencer then holds the robot
still and eventually fails the goal with a reason). An agent directory for
another task, or a broken one, is logged and the node stays up without
answering.
"""

from __future__ import annotations

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.components import agent_inputs, check_stage, load_agent
from reinforcegen_ros.deployment.observation import SensorCache
from reinforcegen_ros.nodes.common import SENSOR_QOS, BaseNode, stamp_ns, subscribe_sensors


class ComponentNode(BaseNode):
    """Loads the agent, keeps a :class:`SensorCache`, calls :meth:`answer` for the phases in ``PHASES``."""

    PHASES: tuple[str, ...] = ()

    def __init__(self, name: str):
        super().__init__(name)
        self.agent_dir = self.declare_parameter("agent", "").value
        self.agent = None
        try:
            self.agent = load_agent(self.agent_dir, self.task)
        except ValueError as exc:
            self.get_logger().error(f"agent rejected, this node will not answer: {exc}")
        need_objects, cameras = agent_inputs(self.agent) if self.agent is not None else (False, [])
        from reinforcegen_ros.tasks import env_class

        objects = env_class(self.task).OBJECTS
        self.cache = SensorCache(objects=objects, cameras=cameras, need_objects=need_objects,
                                 known_frames=tuple(self.config["guards"].get("known_frames", ["world"])))
        self.max_obs_age = float(self.config["sensors"]["max_obs_age"])
        subscribe_sensors(self, self.cache)
        self.last_stage, self.last_phase = None, None
        self.create_subscription(self.m.StageStatus, M.TOPIC_STAGE_STATUS, self._on_status, SENSOR_QOS)

    def _on_status(self, msg) -> None:
        stage, phase, stamp = int(msg.stage_index), str(msg.phase), stamp_ns(msg)
        if (stage, phase) != (self.last_stage, self.last_phase):
            self.on_transition(stage, phase)
            self.last_stage, self.last_phase = stage, phase
        if self.agent is None or phase not in self.PHASES:
            return
        check = check_stage(stage, self.agent.num_stages)
        if not check.ok:
            return self.warn(f"status ignored: {check.reason}", "stage")
        obs, _, why = self.cache.observation(stamp, self.max_obs_age)
        if obs is None:
            return self.warn(f"not answering stage {stage} {phase}: {why.reason}", "obs")
        self.answer(msg, obs, stage, stamp)

    def on_transition(self, stage: int, phase: str) -> None:
        """Called when the (stage, phase) of the status changes."""

    def answer(self, status, obs: dict, stage: int, stamp: int) -> None:
        raise NotImplementedError
