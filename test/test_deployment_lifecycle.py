"""Clean shutdown within 2 s (issue 20): ordered steps under a deadline, the planning thread, a hung process."""

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from reinforcegen_ros.deployment.components import PosePredictorCore
from reinforcegen_ros.deployment.lifecycle import EXIT_DEADLINE, PlanningWorker, ShutdownPlan
from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.planning import Trajectory

ROOT = Path(__file__).resolve().parents[1]


def test_steps_run_in_order_with_the_time_left_and_failures_do_not_stop_the_rest():
    seen = []
    plan = ShutdownPlan(deadline=0.5)
    plan.add("timers", lambda t: seen.append(("timers", t)))
    plan.add("slow", lambda t: time.sleep(0.2))
    plan.add("broken", lambda t: 1 / 0)
    plan.add("join", lambda t: seen.append(("join", t)) or False)  # a thread still alive at its timeout
    plan.add("release", lambda t: seen.append(("release", t)))
    report = plan.run()
    assert [s.name for s in report.steps] == ["timers", "slow", "broken", "join", "release"]
    assert 0.49 <= seen[0][1] <= 0.5 and 0.25 <= seen[1][1] <= 0.31 and seen[2][0] == "release"
    assert [s.ok for s in report.steps] == [True, True, False, False, True]
    assert "ZeroDivisionError" in report.steps[2].detail and "still running" in report.steps[3].detail
    assert not report.ok and "broken" in report.summary() and report.seconds < 0.5


def test_planning_worker_runs_jobs_and_survives_a_raising_handler():
    done = []

    def handle(job):
        if job == "bad":
            raise RuntimeError("planner bug")
        done.append(job)

    worker = PlanningWorker(handle)
    for job in ("a", "bad", "b"):
        assert worker.submit(job)
    t0 = time.monotonic()
    while worker.jobs_done < 3 and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    assert done == ["a", "b"] and worker.errors == ["RuntimeError: planner bug"] and worker.thread.daemon
    assert worker.shutdown(1.0) and not worker.submit("c")


def test_shutdown_does_not_wait_for_a_long_plan_and_drops_queued_ones():
    class SlowPlanner:
        def __init__(self):
            self.started, self.release, self.calls = threading.Event(), threading.Event(), 0

        def plan(self, start, target, touch=()):
            self.calls += 1
            self.started.set()
            self.release.wait(10.0)  # an OMPL solve that takes long
            return Trajectory(poses=np.stack([target]))

    class Agent:
        def predict_pose(self, obs, stage):
            return make_pose([0.1 * stage, 0.0, 1.0], np.eye(3))

    planner, published = SlowPlanner(), []
    core = PosePredictorCore(Agent(), planner, epsilon=0.05)
    worker = PlanningWorker(lambda req: (lambda r: None if worker.stopping.is_set() else published.append(r))(core.plan(req)))
    tick = core.tick({"robot0_joint_pos": np.zeros(7)}, 0, 100)
    worker.submit(tick.plan)
    worker.submit(tick.plan)  # queued behind it: dropped at shutdown
    assert planner.started.wait(5.0)
    t0 = time.monotonic()
    assert not worker.shutdown(0.3)  # still planning after its timeout: abandoned, not joined
    assert 0.3 <= time.monotonic() - t0 < 0.6
    planner.release.set()
    worker.thread.join(5.0)
    assert planner.calls == 1 and published == []  # nothing published after shutdown began


def test_a_node_with_a_hung_thread_exits_within_two_seconds_of_sigint():
    """The node's shutdown path without rclpy: SIGINT, the ordered steps, then the process ends even though a
    non-daemon thread (a callback stuck in native code) never returns."""
    script = textwrap.dedent(f"""
        import signal, sys, threading, time
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from reinforcegen_ros.deployment.lifecycle import EXIT_DEADLINE, PlanningWorker, ShutdownPlan, exit_after
        from reinforcegen_ros.deployment.sequencer import StageSequencer
        from reinforcegen_ros.hybrid import HybridConfig

        hung = threading.Thread(target=threading.Event().wait, daemon=False)  # never returns
        hung.start()
        worker = PlanningWorker(lambda job: time.sleep(30))  # a plan in flight
        worker.submit("plan")
        seq = StageSequencer("coffee", ["a", "b"], HybridConfig(planner="straight_line"))
        assert seq.start("coffee", 0.0, 10**9).ok
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        print("ready", flush=True)
        stop.wait(30)
        exit_after(EXIT_DEADLINE)
        plan = ShutdownPlan()
        plan.add("end goal", lambda t: print("goal:", seq.shutdown(2 * 10**9).reason, flush=True))
        plan.add("join planning thread", worker.shutdown)
        report = plan.run()
        print(report.summary(), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        proc.kill()  # never leave the hung process behind
        proc.wait()
    assert took < 2.0, (took, out, err)
    assert "goal: node shutting down" in out and "join planning thread" in out and "still running" in out, out
    assert took >= 1.5 and EXIT_DEADLINE < 2.0  # the hung thread kept it alive until the deadline timer ended it
