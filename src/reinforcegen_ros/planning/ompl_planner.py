"""Collision-aware joint-space planning of connect segments with OMPL.

:class:`OMPLPlanner` implements the :class:`~reinforcegen_ros.planning.base.Planner`
protocol. For a target grip-site pose it

1. solves IK from several seeds and keeps the collision-free, distinct solutions
   (an unreachable or colliding target raises :class:`PlanningFailed`);
2. returns the straight joint-space segment to the nearest solution when that
   segment is collision free (no sampling at all);
3. otherwise plans with an OMPL geometric planner (RRTConnect by default) in the
   arm's joint space, bounded by its joint limits, with
   :class:`~reinforcegen_ros.planning.collision.CollisionChecker` as the state
   validity checker, and shortcuts the path;
4. densifies the joint path so that consecutive grip-site poses are at most
   ``max_step`` m / ``max_rot_step`` rad apart, and returns both the joint and
   the grip-site waypoints (start excluded, the exact target last).

Contacts that exist at the start (e.g. fingers resting on a just-released
object) are tolerated within ``start_escape`` of the start configuration, and
objects named in ``touch`` may be touched by the gripper within
``goal_contact_radius`` of the target, so grasp approaches remain plannable.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import yaml

from reinforcegen_ros.geometry import rotation_angle
from reinforcegen_ros.planning.base import PlanningFailed, Trajectory
from reinforcegen_ros.planning.collision import GRIPPER, CollisionChecker
from reinforcegen_ros.planning.kinematics import ArmKinematics

CONFIG_PATH = Path(__file__).resolve().parents[3] / "config" / "planning.yaml"
_OMPL_SEEDED = False  # OMPL's RNG seed is process-global and may only be set before its first use


def planning_config(overrides: dict | None = None, path: str | Path | None = None) -> dict:
    """Defaults from ``config/planning.yaml`` with ``overrides`` merged in (nested dicts key by key)."""
    with open(Path(path) if path else CONFIG_PATH) as fh:
        cfg = yaml.safe_load(fh) or {}
    return _merge(cfg, overrides or {})


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _import_ompl():
    """OMPL's Python modules, with its console logging reduced to warnings."""
    try:
        from ompl import base as ob
        from ompl import geometric as og
        from ompl import util as ou
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("OMPLPlanner needs the 'ompl' package (pip install 'ompl>=2')") from exc
    ou.setLogLevel(ou.LOG_WARN)
    return ob, og, ou


class OMPLPlanner:
    """Joint-space sampling-based planner for the arm's grip site (see module docstring)."""

    def __init__(self, env, config: dict | None = None):
        global _OMPL_SEEDED
        self.config = planning_config(config)
        self.ob, self.og, ou = _import_ompl()
        if not _OMPL_SEEDED:
            ou.RNG.setSeed(int(self.config["seed"]))
            _OMPL_SEEDED = True
        self.kin = ArmKinematics(env)
        col = self.config["collision"]
        self.checker = CollisionChecker(env, margin=col["margin"], ignore=[tuple(p) for p in col["ignore"]], attach_held=col["attach_held"])
        robot = self.checker.env.robots[0]
        self.home = np.array(robot.init_qpos, dtype=float)
        self.rng = np.random.default_rng(int(self.config["seed"]))
        self.last_info: dict = {}

    # ------------------------------------------------------------------ public
    def plan(self, start_joints: np.ndarray, target_pose: np.ndarray, touch: Iterable[str] = ()) -> Trajectory:
        """Collision-free trajectory of the grip site from ``start_joints`` to ``target_pose``.

        ``touch`` names objects (collision selectors) the gripper may touch near
        the target, e.g. the object about to be grasped.
        """
        t0 = time.perf_counter()
        start, target = _check_inputs(start_joints, target_pose)
        self.checker.sync()
        valid = self._validity(start, target, [(self.checker.resolve(GRIPPER), self.checker.resolve(n)) for n in touch])
        goals = self._goal_configurations(start, target, valid)
        path, method = self._direct_path(start, goals, valid), "direct"
        if path is None:
            path, method = self._sample_path(start, goals, valid), self.config["planner"]
        joints = self._densify(path)
        bad = [k for k, q in enumerate(joints) if not valid(q)]
        if bad:
            raise PlanningFailed(f"planned path touches an obstacle between collision checks at waypoint {bad[0]}; lower check_resolution")
        poses = np.stack([self.kin.forward(q) for q in joints])
        poses[-1] = target
        elapsed = time.perf_counter() - t0
        self.last_info = {"method": method, "goals": len(goals), "waypoints": len(joints), "time": elapsed}
        return Trajectory(poses=poses, joints=joints, planning_time=elapsed)

    # ------------------------------------------------------------------ validity
    def _validity(self, start: np.ndarray, target: np.ndarray, touch_pairs: list) -> Callable[[np.ndarray], bool]:
        """State validity: within joint limits and no invalidating contact (with the tolerances above)."""
        col = self.config["collision"]
        start_pairs = self.checker.contact_pairs(start)
        if start_pairs and col["start_escape"] <= 0:
            raise PlanningFailed(f"start configuration in collision: {self.checker.contacts(start)[0]}")
        goal_radius, escape = float(col["goal_contact_radius"]), float(col["start_escape"])
        lower, upper = np.minimum(self.kin.lower, start), np.maximum(self.kin.upper, start)
        checker = self.checker

        def valid(q: np.ndarray) -> bool:
            if np.any(q < lower) or np.any(q > upper):
                return False
            site = checker.set_joints(q)
            extra = []
            if touch_pairs and np.linalg.norm(site[:3, 3] - target[:3, 3]) < goal_radius:
                extra += touch_pairs
            if start_pairs and np.linalg.norm(q - start) < escape:
                extra += start_pairs
            return not checker.current_contacts(extra, first_only=True)

        valid.bounds = (lower, upper)  # type: ignore[attr-defined]
        return valid

    # ------------------------------------------------------------------ goal
    def _goal_configurations(self, start: np.ndarray, target: np.ndarray, valid) -> list[np.ndarray]:
        """Distinct collision-free IK solutions for ``target``, nearest to ``start`` first."""
        ik = self.config["ik"]
        seeds = [start, self.home] + [start + self.rng.normal(0.0, ik["seed_noise"], 7) for _ in range(max(0, ik["seeds"] - 2))]
        solutions, colliding = [], []
        for seed in seeds[: max(1, ik["seeds"])]:
            q = self.kin.inverse(target, seed, iters=int(ik["iters"]), tol=float(ik["tol"]))
            if q is None or any(np.max(np.abs(q - s)) < ik["distinct"] for s in solutions + colliding):
                continue
            (solutions if valid(q) else colliding).append(q)
            if len(solutions) >= ik["solutions"]:
                break
        if not solutions:
            if colliding:
                contacts = self.checker.contacts(colliding[0])
                reason = f"; e.g. {contacts[0]}" if contacts else ""
                raise PlanningFailed(f"target in collision: all {len(colliding)} IK solutions collide{reason}")
            raise PlanningFailed(f"target unreachable: no IK solution within joint limits from {len(seeds)} seeds")
        return sorted(solutions, key=lambda q: float(np.linalg.norm(q - start)))

    # ------------------------------------------------------------------ paths
    def _direct_path(self, start: np.ndarray, goals: list[np.ndarray], valid) -> list[np.ndarray] | None:
        """The straight joint-space segment to the nearest goal whose segment is collision free."""
        res = float(self.config["check_resolution"])
        for goal in goals:
            n = max(1, int(np.ceil(np.linalg.norm(goal - start) / res)))
            if all(valid(start + f * (goal - start)) for f in np.linspace(0.0, 1.0, n + 1)[1:]):
                return [start, goal]
        return None

    def _sample_path(self, start: np.ndarray, goals: list[np.ndarray], valid) -> list[np.ndarray]:
        """An OMPL path (simplified) from ``start`` to any of ``goals``."""
        ob, og = self.ob, self.og
        lower, upper = valid.bounds
        space = ob.RealVectorStateSpace(7)
        bounds = ob.RealVectorBounds(7)
        for i in range(7):
            bounds.setLow(i, float(lower[i]))
            bounds.setHigh(i, float(upper[i]))
        space.setBounds(bounds)
        si = ob.SpaceInformation(space)
        si.setStateValidityChecker(lambda state: valid(np.array(state[0:7])))
        si.setStateValidityCheckingResolution(float(self.config["check_resolution"]) / space.getMaximumExtent())
        si.setup()
        pdef = ob.ProblemDefinition(si)
        pdef.addStartState(_state(si, start))
        goal = ob.GoalStates(si)
        for q in goals:
            goal.addState(_state(si, q))
        pdef.setGoal(goal)
        planner = getattr(og, self.config["planner"])(si)
        if self.config["range"] > 0 and hasattr(planner, "setRange"):
            planner.setRange(float(self.config["range"]))
        planner.setProblemDefinition(pdef)
        planner.setup()
        status = planner.solve(ob.timedPlannerTerminationCondition(float(self.config["time_limit"])))
        if not pdef.hasExactSolution():
            raise PlanningFailed(f"no collision-free path found within {self.config['time_limit']} s ({status.asString()})")
        path = pdef.getSolutionPath()
        og.PathSimplifier(si).simplify(path, float(self.config["simplify_time"]))
        return [np.array(s[0:7]) for s in path.getStates()]

    def _densify(self, path: list[np.ndarray]) -> np.ndarray:
        """Joint waypoints (start excluded) with grip-site spacing within ``max_step``/``max_rot_step``."""
        max_step, max_rot = float(self.config["max_step"]), float(self.config["max_rot_step"])
        out = []
        for qa, qb in zip(path[:-1], path[1:]):
            pa = self.kin.forward(qa)
            n = 1
            while True:
                qs = [qa + f * (qb - qa) for f in np.linspace(0.0, 1.0, n + 1)[1:]]
                poses = [pa] + [self.kin.forward(q) for q in qs]
                ratio = max(_spacing_ratio(a, b, max_step, max_rot) for a, b in zip(poses[:-1], poses[1:]))
                if ratio <= 1.0:
                    break
                n = max(n + 1, int(np.ceil(n * ratio)))
            out.extend(qs)
        return np.array(out)


def _spacing_ratio(a: np.ndarray, b: np.ndarray, max_step: float, max_rot: float) -> float:
    """How many times two poses exceed the allowed waypoint spacing (<= 1 is fine)."""
    return max(np.linalg.norm(b[:3, 3] - a[:3, 3]) / max_step, rotation_angle(a[:3, :3], b[:3, :3]) / max_rot)


def _state(si, joints: np.ndarray):
    """An OMPL real-vector state holding ``joints``."""
    state = si.allocState()
    state[0:7] = [float(v) for v in joints]
    return state


def _check_inputs(start_joints, target_pose) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies of the start joints (7,) and the target pose (4x4 rigid transform)."""
    start = np.asarray(start_joints, dtype=float).reshape(-1)
    target = np.asarray(target_pose, dtype=float)
    if start.shape != (7,) or not np.all(np.isfinite(start)):
        raise PlanningFailed(f"start joints must be 7 finite numbers, got {start_joints!r}")
    if target.shape != (4, 4) or not np.all(np.isfinite(target)):
        raise PlanningFailed("target pose must be a finite 4x4 matrix (got NaN, inf or a wrong shape)")
    rot = target[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
        raise PlanningFailed("target pose rotation is not a proper rotation matrix")
    return start, target
