"""Clean shutdown of a node within a deadline, without ROS.

A node's shutdown is an ordered list of steps: stop its timers, end a running
goal (so that the action call returns), join the planning thread, release the
simulator, shut the executor down, destroy the node. :class:`ShutdownPlan`
runs them under one deadline, gives each step what is left of it, records what
each took and which failed, and never raises. :class:`PlanningWorker` is the
background thread that plans: a daemon thread with a job queue, so a plan in
flight can delay shutdown by at most the join timeout and never keeps the
process alive. :func:`exit_after` is the last resort, a daemon timer that ends
the process if the steps themselves hang (a callback stuck in native code).

The nodes (``nodes/common.py``) run the plan when ``rclpy`` stops spinning on
SIGINT: everything ends within ``SHUTDOWN_DEADLINE`` s, the process within
``EXIT_DEADLINE`` s.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

SHUTDOWN_DEADLINE = 1.5  # s for the ordered steps
EXIT_DEADLINE = 1.9  # s after which the process ends even if a step or a thread hangs (issue 20: < 2 s)

_STOP = object()


@dataclass
class StepReport:
    """What one shutdown step did: its name, seconds, whether it finished, and why not."""

    name: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class ShutdownReport:
    """All steps of one shutdown."""

    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0
    deadline: float = SHUTDOWN_DEADLINE

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and self.seconds <= self.deadline

    def summary(self) -> str:
        parts = [f"{s.name} {1e3 * s.seconds:.0f} ms" + ("" if s.ok else f" ({s.detail or 'did not finish'})") for s in self.steps]
        return f"shutdown in {1e3 * self.seconds:.0f} ms (deadline {self.deadline:g} s): " + ", ".join(parts)


class ShutdownPlan:
    """Ordered shutdown steps under one deadline.

    A step is ``fn(remaining_seconds)``; it returns ``False`` when it could not
    finish within the time it was given (a thread still alive), anything else
    when it did. A step that raises is reported and the next steps still run.
    """

    def __init__(self, deadline: float = SHUTDOWN_DEADLINE, clock: Callable[[], float] = time.monotonic):
        self.deadline, self.clock = float(deadline), clock
        self.steps: list[tuple[str, Callable[[float], Any]]] = []

    def add(self, name: str, fn: Callable[[float], Any]) -> "ShutdownPlan":
        self.steps.append((name, fn))
        return self

    def run(self) -> ShutdownReport:
        t0 = self.clock()
        report = ShutdownReport(deadline=self.deadline)
        for name, fn in self.steps:
            start = self.clock()
            remaining = max(0.0, self.deadline - (start - t0))
            try:
                finished = fn(remaining)
                ok, detail = finished is not False, "" if finished is not False else "still running at its timeout"
            except Exception as exc:  # noqa: BLE001 - reported; the remaining steps still run
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            report.steps.append(StepReport(name, self.clock() - start, ok, detail))
        report.seconds = self.clock() - t0
        return report


class PlanningWorker:
    """One daemon thread that runs ``handle(job)`` for each submitted job, in order; never raises.

    ``shutdown(timeout)`` drops the queued jobs, lets the job in flight finish if it
    does so within ``timeout`` and returns whether the thread has ended. A job
    still running then is abandoned (the thread is a daemon: it cannot keep the
    process alive); ``stopping`` tells the handler not to publish any more.
    """

    def __init__(self, handle: Callable[[Any], None], name: str = "planner"):
        self.handle = handle
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.jobs_done = 0
        self._queue: queue.Queue = queue.Queue()
        self._busy = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, job) -> bool:
        """Queue ``job``; False once shutting down."""
        if self.stopping.is_set():
            return False
        self._queue.put(job)
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP or self.stopping.is_set():
                return
            self._busy.set()
            try:
                self.handle(job)
            except Exception as exc:  # noqa: BLE001 - a planner bug must not end the worker
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._busy.clear()
                self.jobs_done += 1

    def shutdown(self, timeout: float) -> bool:
        """Stop taking jobs, drop the queued ones, wait up to ``timeout`` s for the one in flight; True if the thread ended."""
        self.stopping.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(_STOP)
        self.thread.join(max(0.0, float(timeout)))
        return not self.thread.is_alive()


def exit_after(seconds: float, code: int = 0, message: str = "") -> threading.Timer:
    """A daemon timer that ends the process (``os._exit``) after ``seconds`` unless cancelled first."""

    def _exit() -> None:
        if message:
            print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)

    timer = threading.Timer(float(seconds), _exit)
    timer.daemon = True
    timer.start()
    return timer
