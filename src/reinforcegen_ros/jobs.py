"""The job pool: independent jobs in this process, on a local process pool, or on Ray actors.

Not to be confused with the hybrid executor (:class:`reinforcegen_ros.hybrid.HybridExecutor`,
the state machine of Algorithm 1): a pool only runs jobs. The command line
chooses one with ``--pool local|ray`` (``--executor`` is the old name of the flag).

Data generation and evaluation both run many independent, seeded episodes.
Each worker calls ``initializer(*initargs)`` once (building its environment,
planner, agent ...) and then ``fn(job)`` per job; results come back in
completion order. ``workers=1`` runs in this process, which keeps tracebacks
and tests simple.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol

POOL_KINDS = ("local", "ray")


class JobPool(Protocol):
    """What :func:`make_pool` returns."""

    def map(self, jobs: Iterable) -> Iterator: ...

    def close(self) -> None: ...


class LocalPool:
    """Jobs in this process (``workers=1``) or on a spawn process pool."""

    def __init__(self, workers: int, initializer: Callable, initargs: tuple, fn: Callable, finalizer: Callable | None = None):
        self.fn, self.finalizer, self.pool = fn, finalizer, None
        if workers <= 1:
            initializer(*initargs)
        else:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(workers, initializer=initializer, initargs=initargs)

    def map(self, jobs: Iterable) -> Iterator:
        if self.pool is None:
            return (self.fn(job) for job in jobs)
        return self.pool.imap_unordered(self.fn, list(jobs))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        elif self.finalizer is not None:
            self.finalizer()


class RayPool:
    """Jobs on Ray actors: a local Ray, or the cluster at ``address``."""

    def __init__(self, workers: int, initializer: Callable, initargs: tuple, fn: Callable, address: str | None = None):
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.ray, self.fn = ray, fn
        self.actors = [ray.remote(_Actor).remote(initializer, initargs) for _ in range(max(1, workers))]

    def map(self, jobs: Iterable) -> Iterator:
        jobs, idle, pending = list(jobs), list(self.actors), {}
        while jobs or pending:
            while jobs and idle:
                actor = idle.pop()
                pending[actor.run.remote(self.fn, jobs.pop(0))] = actor
            done, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in done:
                idle.append(pending.pop(ref))
                yield self.ray.get(ref)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


class _Actor:
    """A Ray actor that initialises once and then runs jobs."""

    def __init__(self, initializer: Callable, initargs: tuple):
        initializer(*initargs)

    def run(self, fn: Callable, job):
        return fn(job)


def make_pool(kind: str, workers: int, initializer: Callable, initargs: tuple, fn: Callable,
              address: str | None = None, finalizer: Callable | None = None) -> JobPool:
    """A :class:`LocalPool` or :class:`RayPool` by kind (``local`` or ``ray``)."""
    if kind == "ray":
        return RayPool(workers, initializer, initargs, fn, address)
    if kind == "local":
        return LocalPool(workers, initializer, initargs, fn, finalizer)
    raise ValueError(f"unknown job pool '{kind}'; choose one of {', '.join(POOL_KINDS)}")
