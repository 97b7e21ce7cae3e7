"""The rclpy nodes' wiring on a stand-in for rclpy (``deployment_support.FakeRos``), without ROS.

Not a ROS test (``test/ros`` is): it constructs the bridge, the stage sequencer and the three component nodes with
a tiny trained agent, passes their messages on an in-process bus and checks what issue 20 asks of the graph:
idle status between goals, /diagnostics, goals from the reset scene of their seed, an e-stop hold that is not
refused, episode markers, and each node's shutdown within the deadline.
"""

import time

import numpy as np
import pytest
import yaml

from deployment_support import TASK, FakeRos, source_demos, tiny_agent


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nodes_agent")
    return tiny_agent(source_demos(root / "source.hdf5", 2), root / "hsp")


@pytest.fixture
def graph(agent_dir, tmp_path, monkeypatch):
    from reinforcegen_ros.deployment.config import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / "deployment.yaml").read_text())
    cfg["sequencer"]["answer_timeout"] = 10.0  # answers come on the bus, never late
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(cfg))
    common = {"task": TASK, "config_file": str(tmp_path / "deployment.yaml"), "robot_file": str(CONFIG_DIR / "sim.yaml")}
    agent = {**common, "agent": str(agent_dir)}
    ros = FakeRos({"robosuite_bridge": {**common, "seed": 2}, "stage_sequencer": agent, "pose_predictor": {**agent, "planner": "straight_line"},
                   "skill_policy": agent, "termination": agent})
    ros.install(monkeypatch)
    from reinforcegen_ros.nodes import common as node_common
    from reinforcegen_ros.nodes.pose_predictor import PosePredictorNode
    from reinforcegen_ros.nodes.robosuite_bridge import RobosuiteBridgeNode
    from reinforcegen_ros.nodes.skill_policy import SkillPolicyNode
    from reinforcegen_ros.nodes.stage_sequencer import StageSequencerNode
    from reinforcegen_ros.nodes.termination import TerminationNode

    import types

    from reinforcegen_ros.nodes import robosuite_bridge

    monkeypatch.setattr(node_common, "exit_after", lambda *a, **k: None)  # never end the test process
    ros.wall = [100.0]  # the bridge's wall clock: one lock-step per step() below, never a run of them inside pump()
    monkeypatch.setattr(robosuite_bridge, "time", types.SimpleNamespace(monotonic=lambda: ros.wall[0]))
    nodes = {"bridge": RobosuiteBridgeNode(), "sequencer": StageSequencerNode(), "pose": PosePredictorNode(),
             "skill": SkillPolicyNode(), "term": TerminationNode()}
    ros.pump()
    yield ros, nodes, node_common
    for node in nodes.values():
        if hasattr(node, "worker"):
            node.worker.shutdown(0.0)


def step(ros, nodes, n=1):
    """``n`` bridge steps, each followed by everything it causes on the bus (a tick of the graph)."""
    for _ in range(n):
        ros.wall[0] += 0.1
        ros.fire(nodes["bridge"], "_on_timer")
        ros.pump()
        if nodes["pose"].worker.busy or not nodes["pose"].worker._queue.empty():
            end = time.monotonic() + 10
            while (nodes["pose"].worker.busy or not nodes["pose"].worker._queue.empty()) and time.monotonic() < end:
                time.sleep(0.005)
            ros.pump()


def statuses(ros, since=0):
    return ros.published.get("/stage_status", [])[since:]


def test_nodes_run_goals_on_their_seeds_with_status_diagnostics_and_a_clean_estop(graph):
    ros, nodes, _ = graph
    bridge, seq = nodes["bridge"], nodes["sequencer"]
    step(ros, nodes, 4)
    idle = statuses(ros)
    assert len(idle) >= 4 and {s.phase for s in idle} == {"idle"} and {s.stage_index for s in idle} == {-1}
    server = ros.services["/execute_task"][1]
    Goal = ros.interface("reinforcegen_msgs/action/ExecuteTask").Goal
    assert Goal().seed == -1 or Goal().seed == 0  # (ROS would give the .action default -1; the stand-in gives 0)

    n = len(statuses(ros))
    accepted, handle, thread = server.send_goal(Goal(task=TASK, time_limit=1.0, seed=5))
    assert accepted and bridge.core.seed == 5 and bridge.core.frame.step == 0  # reset before the goal's first tick
    step(ros, nodes, 40)
    thread.join(5.0)
    result = handle.result
    assert result.seed == 5 and not result.success and "time limit of 1 s" in result.reason, result.reason
    phases = [s.phase for s in statuses(ros, n)]
    assert phases[0] in ("predict", "plan") and "idle" not in phases[: phases.index("failed")]
    assert ros.published["/episode"][-1].event == 1 and '"seed": 5' in ros.published["/episode"][-1].attrs_json
    first_scene = bridge.core.frame.sim_state

    accepted, handle, thread = server.send_goal(Goal(task=TASK, time_limit=30.0, seed=6))
    assert accepted and bridge.core.seed == 6
    step(ros, nodes, 8)
    ros.subs["/emergency_stop"][0](ros.message_class("std_msgs/msg/Bool")(data=True))
    ros.pump()
    thread.join(5.0)
    assert handle.result.reason == "emergency stop" and handle.state == "aborted"
    step(ros, nodes, 3)
    assert not [w for w in ros.warnings("robosuite_bridge") if "duplicate" in w], ros.warnings("robosuite_bridge")
    stamps = [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in ros.published["/eef_command"]]
    assert stamps == sorted(set(stamps))  # strictly increasing, the e-stop hold included
    assert not server.send_goal(Goal(task=TASK, time_limit=1.0, seed=7))[0]  # latched
    assert not np.allclose(first_scene, bridge.core.frame.sim_state)

    ros.fire(seq, "_on_diagnostics")
    diag = ros.published["/diagnostics"][-1].status[0]
    values = {kv.key: kv.value for kv in diag.values}
    assert diag.level == 2 and diag.message == "emergency stop latched" and int(values["plans_received"]) >= 1
    assert values["goals_failed"] == "2" and float(values["planning_latency_ms_max"]) >= 0


def test_the_answer_deadline_timer_runs_only_while_a_tick_waits(graph, monkeypatch):
    """The sequencer's deadline timer is off while idle, armed by a tick that waits for answers, and completes
    that tick when it fires after answer_timeout (components that never answer cannot stall the graph)."""
    ros, nodes, _ = graph
    seq = nodes["sequencer"]
    deadline = next(t for t in seq.timers if t.callback.__name__ == "_on_deadline")
    step(ros, nodes, 2)
    assert deadline.cancelled and seq.core.pending is None  # idle: nothing waits
    server = ros.services["/execute_task"][1]
    Goal = ros.interface("reinforcegen_msgs/action/ExecuteTask").Goal
    accepted, handle, thread = server.send_goal(Goal(task=TASK, time_limit=30.0, seed=3))
    assert accepted
    monkeypatch.setattr(seq.core, "answers_ready", lambda: False)  # as if the components were silent
    step(ros, nodes, 1)
    assert seq.core.pending is not None and not deadline.cancelled  # the tick waits; its deadline is armed
    deadline.callback()  # fired early (a later tick re-armed it): nothing happens
    assert seq.core.pending is not None and not deadline.cancelled
    seq.deadline = 0.0  # answer_timeout has passed
    deadline.callback()
    assert seq.core.pending is None and deadline.cancelled  # completed with the answers at hand, then disarmed
    ros.subs["/emergency_stop"][0](ros.message_class("std_msgs/msg/Bool")(data=True))
    ros.pump()
    thread.join(5.0)


def test_every_node_shuts_down_cleanly(graph, capsys):
    """Timers, the running goal, the planning thread and the simulator: each node's shutdown steps all run.

    How long they take is a benchmark figure (docs/RESULTS.md), not asserted here: a loaded machine
    may take seconds to release a simulator.
    """
    ros, nodes, node_common = graph
    server = ros.services["/execute_task"][1]
    Goal = ros.interface("reinforcegen_msgs/action/ExecuteTask").Goal
    accepted, handle, thread = server.send_goal(Goal(task=TASK, time_limit=30.0, seed=1))
    step(ros, nodes, 3)
    for name, node in nodes.items():
        node_common.shutdown_node(node, executor=None)
        assert all(t.cancelled for t in node.timers) and node.destroyed, name
    thread.join(2.0)
    assert handle.result.reason == "node shutting down"  # the action call returned
    assert nodes["bridge"].core.closed and not nodes["pose"].worker.thread.is_alive()
    out = capsys.readouterr()
    text = out.out + out.err  # a shutdown past its deadline reports on stderr
    assert "release simulator" in text and "join planning thread" in text and "end running goal" in text
