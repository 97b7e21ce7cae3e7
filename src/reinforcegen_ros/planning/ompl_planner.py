"""Collision-aware joint-space planning of connect segments with OMPL.

:class:`OMPLPlanner` implements the :class:`~reinforcegen_ros.planning.base.Planner`
protocol. For a target grip-site pose it

1. solves IK from several seeds and keeps the collision-free, distinct solutions
   (an unreachable or colliding target raises :class:`PlanningFailed`);
2. returns the straight joint-space segment to the nearest solution when that
   segment is collision free (no sampling at all), else the task-space straight
   line (IK per waypoint) when it is collision free and continuous in joints;
3. otherwise plans with an OMPL geometric planner (RRTConnect by default) in the
   arm's joint space, bounded by its joint limits, with
   :class:`~reinforcegen_ros.planning.collision.CollisionChecker` as the state
   validity checker, and shortcuts the path;
4. densifies the joint path so that consecutive grip-site poses are at most
   ``max_step`` m / ``max_rot_step`` rad apart, and returns both the joint and
   the grip-site waypoints (start excluded, the exact target last).

Planning is reproducible: every query seeds its IK seeds and OMPL's sampler
from the configured seed and the query itself (start joints, target pose), and
sampling stops after a budget of collision checks (``max_checks``), not of
wall-clock time, so the same query gives the same path however loaded the
machine is. ``time_limit`` only caps a runaway query.

Contacts that exist at the start (e.g. fingers resting on a just-released
object) are tolerated within ``start_escape`` of the start configuration, and
objects named in ``touch`` may be touched by the gripper, or by the object it
holds, within ``goal_contact_radius`` of the target, so grasp approaches and
insertions that start in contact remain plannable.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import mujoco
import numpy as np
import yaml

from reinforcegen_ros.geometry import rotation_angle
from reinforcegen_ros.planning.base import PlanningFailed, Trajectory
from reinforcegen_ros.planning.collision import GRIPPER, CollisionChecker
from reinforcegen_ros.planning.kinematics import ArmKinematics
from reinforcegen_ros.planning.straight_line import interpolate_poses

CONFIG_PATH = Path(__file__).resolve().parents[3] / "config" / "planning.yaml"
CARTESIAN_WAYPOINT_TOL = 1e-3  # m, IK tolerance of the intermediate waypoints of a task-space straight line
VERIFY_RETRIES = 2  # re-plans at half the check resolution when a densified waypoint collides
MAX_SEGMENT_WAYPOINTS = 10000  # guard of the densification loop


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
        self.config = planning_config(config)
        self.ob, self.og, self.ou = _import_ompl()
        self.kin = ArmKinematics(env)
        col = self.config["collision"]
        self.checker = CollisionChecker(env, margin=col["margin"], ignore=[tuple(p) for p in col["ignore"]], attach_held=col["attach_held"])
        robot = self.checker.env.robots[0]
        self.home = np.array(robot.init_qpos, dtype=float)
        self.shoulder, self.reach = self._reach_bound(robot)
        self.rng = np.random.default_rng(int(self.config["seed"]))
        self.last_info: dict = {}

    def _seed_query(self, start: np.ndarray, target: np.ndarray) -> None:
        """Seed the IK seed sampler and OMPL's sampler from the configured seed and the query."""
        key = np.concatenate([np.round(start, 6), np.round(target[:3].ravel(), 6)]).tobytes()
        seed = zlib.crc32(key, int(self.config["seed"])) or 1  # OMPL ignores seed 0
        self.rng = np.random.default_rng(seed)
        ou = self.ou
        ou.setLogLevel(ou.LOG_NONE)  # OMPL logs an error when re-seeding, yet the planners made afterwards follow the new seed
        ou.RNG.setSeed(seed)
        ou.setLogLevel(ou.LOG_WARN)

    # ------------------------------------------------------------------ public
    def plan(self, start_joints: np.ndarray, target_pose: np.ndarray, touch: Iterable[str] = ()) -> Trajectory:
        """Collision-free trajectory of the grip site from ``start_joints`` to ``target_pose``.

        ``touch`` names objects (collision selectors) the gripper, and an object
        it holds, may touch near the target, e.g. the object about to be grasped
        or the tripod a held needle is threaded through.
        """
        t0 = time.perf_counter()
        self.last_info = {}
        start, target = _check_inputs(start_joints, target_pose)
        distance = float(np.linalg.norm(target[:3, 3] - self.shoulder))
        if distance > self.reach:
            raise PlanningFailed(f"target unreachable: {distance:.2f} m from the first joint, the arm reaches at most {self.reach:.2f} m")
        self.checker.sync()
        self._seed_query(start, target)
        valid = self.validity(start, target, touch)
        resolution = float(self.config["check_resolution"])
        for attempt in range(VERIFY_RETRIES + 1):
            goals, path, method = self._find_path(start, target, valid, resolution / 2**attempt)
            joints = self._densify(path)
            if all(valid(q) for q in joints):
                break
        else:
            raise PlanningFailed(f"paths kept crossing obstacles between collision checks (down to {resolution / 2**attempt:.4f} rad)")
        self.last_info["retries"] = attempt
        poses = np.stack([self.kin.forward(q) for q in joints])
        poses[-1] = target
        elapsed = time.perf_counter() - t0
        self.last_info.update(method=method, goals=len(goals), waypoints=len(joints), checks=valid.calls, time=elapsed)
        return Trajectory(poses=poses, joints=joints, planning_time=elapsed)

    # ------------------------------------------------------------------ validity
    def validity(self, start: np.ndarray, target: np.ndarray, touch: Iterable[str] = ()) -> "_Validity":
        """State validity of a query (joint limits, contacts, start/goal tolerances) on the last synced scene."""
        col = self.config["collision"]
        holders = [GRIPPER] + ([self.checker.attached_geoms] if self.checker.attached_geoms else [])
        touch_mask = self.checker.pair_mask((holder, name) for name in touch for holder in holders)
        start_mask = self.checker.contact_mask(start)
        if start_mask.any() and col["start_escape"] <= 0:
            raise PlanningFailed(f"start configuration in collision: {self.checker.contacts(start)[0]}")
        return _Validity(
            self.checker,
            np.minimum(self.kin.lower, start),
            np.maximum(self.kin.upper, start),
            start,
            start_mask if start_mask.any() else None,
            float(col["start_escape"]),
            target[:3, 3].copy(),
            touch_mask if touch_mask.any() else None,
            float(col["goal_contact_radius"]),
        )

    def _reach_bound(self, robot) -> tuple[np.ndarray, float]:
        """World anchor of the first arm joint and an upper bound of its distance to the grip site.

        The bound sums the fixed offsets along the kinematic chain (child body
        positions, twice each joint's offset, the site's offset), so any target
        farther away is unreachable whatever the joints.
        """
        model, data = self.checker.model, self.checker.data
        first = int(robot._ref_joint_indexes[0])
        mujoco.mj_kinematics(model, data)
        anchor = np.array(data.xanchor[first])
        site = self.checker.site_id
        reach = float(np.linalg.norm(model.site_pos[site]))
        body, root = int(model.site_bodyid[site]), int(model.jnt_bodyid[first])
        while body != root:
            reach += float(np.linalg.norm(model.body_pos[body]))
            for j in range(int(model.body_jntadr[body]), int(model.body_jntadr[body] + model.body_jntnum[body])):
                reach += 2.0 * float(np.linalg.norm(model.jnt_pos[j]))
            body = int(model.body_parentid[body])
        return anchor, reach + 2.0 * float(np.linalg.norm(model.jnt_pos[first]))

    # ------------------------------------------------------------------ search
    def _find_path(self, start: np.ndarray, target: np.ndarray, valid, resolution: float) -> tuple[list, list, str]:
        """Goal configurations, a joint path and how it was found: direct, cartesian or sampled."""
        goals, path = self._goals_or_direct_path(start, target, valid, resolution)
        if path is not None:
            return goals, path, "direct"
        if self.config["cartesian"]:
            path = self._cartesian_path(start, target, valid, resolution)
            if path is not None:
                return goals, path, "cartesian"
        return goals, self._sample_path(start, goals, valid, resolution), self.config["planner"]

    def _goals_or_direct_path(self, start: np.ndarray, target: np.ndarray, valid, resolution: float) -> tuple[list[np.ndarray], list | None]:
        """Collision-free IK solutions for ``target`` (nearest first), stopping early at a free straight segment."""
        ik = self.config["ik"]
        n_seeds = max(1, int(ik["seeds"]))
        turned = self.kin.wrist_turns(start)[1:]
        seeds = [start, self.home, *turned] + [start + self.rng.normal(0.0, ik["seed_noise"], 7) for _ in range(max(0, n_seeds - 2 - len(turned)))]
        solutions, colliding = [], []
        for seed in seeds[:n_seeds]:
            q = self.kin.inverse(target, seed, iters=int(ik["iters"]), tol=float(ik["tol"]))
            if q is None or any(np.max(np.abs(q - s)) < ik["distinct"] for s in solutions + colliding):
                continue
            if not valid(q):
                colliding.append(q)
                continue
            solutions.append(q)
            if self._segment_free(start, q, valid, resolution):
                return solutions, [start, q]
            if len(solutions) >= ik["solutions"]:
                break
        if not solutions:
            if colliding:
                contacts = self.checker.contacts(colliding[0], valid.goal_mask)
                reason = f", e.g. {contacts[0]}" if contacts else ""
                raise PlanningFailed(f"target in collision: all {len(colliding)} IK solutions collide{reason}")
            raise PlanningFailed(f"target unreachable: no IK solution within joint limits from {n_seeds} seeds")
        return sorted(solutions, key=lambda q: float(np.linalg.norm(q - start))), None

    # ------------------------------------------------------------------ paths
    @staticmethod
    def _segment_free(qa: np.ndarray, qb: np.ndarray, valid, resolution: float) -> bool:
        """Whether the straight joint-space segment is valid, checked every ``resolution`` rad (L2)."""
        n = max(1, int(np.ceil(np.linalg.norm(qb - qa) / resolution)))
        return all(valid(qa + f * (qb - qa)) for f in np.linspace(0.0, 1.0, n + 1)[1:])

    def _cartesian_path(self, start: np.ndarray, target: np.ndarray, valid, resolution: float) -> list[np.ndarray] | None:
        """The task-space straight line to ``target`` (IK per waypoint) if it is collision free and continuous."""
        ik, max_jump = self.config["ik"], float(self.config["cartesian_max_joint_step"])
        poses = interpolate_poses(self.kin.forward(start), target, float(self.config["max_step"]), float(self.config["max_rot_step"]))
        path = [start]
        for k, pose in enumerate(poses):
            last = k == len(poses) - 1
            q = self.kin.inverse(pose, path[-1], iters=int(ik["iters"]), tol=float(ik["tol"]) if last else CARTESIAN_WAYPOINT_TOL)
            if q is None or np.max(np.abs(q - path[-1])) > max_jump or not self._segment_free(path[-1], q, valid, resolution):
                return None
            path.append(q)
        return path

    def _sample_path(self, start: np.ndarray, goals: list[np.ndarray], valid, resolution: float) -> list[np.ndarray]:
        """An OMPL path (simplified) from ``start`` to any of ``goals``."""
        ob, og = self.ob, self.og
        lower, upper = valid.lower, valid.upper
        space = ob.RealVectorStateSpace(7)
        bounds = ob.RealVectorBounds(7)
        for i in range(7):
            bounds.setLow(i, float(lower[i]))
            bounds.setHigh(i, float(upper[i]))
        space.setBounds(bounds)
        si = ob.SpaceInformation(space)
        si.setStateValidityChecker(lambda state: valid(np.array(state[0:7])))
        si.setStateValidityCheckingResolution(resolution / space.getMaximumExtent())
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
        t0 = time.perf_counter()
        budget = valid.calls + int(self.config["max_checks"])
        stop = ob.plannerOrTerminationCondition(
            ob.PlannerTerminationCondition(lambda: valid.calls >= budget),
            ob.timedPlannerTerminationCondition(float(self.config["time_limit"])),
        )
        status = planner.solve(stop)
        self.last_info["sampling_time"] = time.perf_counter() - t0
        self.last_info["sampling_checks"] = valid.calls - (budget - int(self.config["max_checks"]))
        if not pdef.hasExactSolution():
            limit = f"{self.config['max_checks']} collision checks" if valid.calls >= budget else f"{self.config['time_limit']} s"
            raise PlanningFailed(f"no collision-free path found within {limit} ({status.asString()})")
        path = pdef.getSolutionPath()
        self.last_info["sampled_vertices"] = path.getStateCount()
        t0 = time.perf_counter()
        self._simplify(si, path)
        self.last_info["simplify_time"] = time.perf_counter() - t0
        return [np.array(s[0:7]) for s in path.getStates()]

    def _simplify(self, si, path) -> None:
        """Shorten a sampled path in place with the configured ``simplify`` method."""
        method = self.config["simplify"]
        if method == "rope":
            self.og.PathSimplifier(si).ropeShortcutPath(path)
        elif method == "full":
            self.og.PathSimplifier(si).simplify(path, float(self.config["simplify_time"]))
        elif method != "none":
            raise ValueError(f"unknown simplify method '{method}' (rope, full or none)")

    def _densify(self, path: list[np.ndarray]) -> np.ndarray:
        """Joint waypoints (start excluded) with grip-site spacing within ``max_step``/``max_rot_step``."""
        max_step, max_rot = float(self.config["max_step"]), float(self.config["max_rot_step"])
        out = []
        for qa, qb in zip(path[:-1], path[1:]):
            pa = self.kin.forward(qa)
            n = 1
            while n <= MAX_SEGMENT_WAYPOINTS:
                qs = [qa + f * (qb - qa) for f in np.linspace(0.0, 1.0, n + 1)[1:]]
                poses = [pa] + [self.kin.forward(q) for q in qs]
                ratio = max(_spacing_ratio(a, b, max_step, max_rot) for a, b in zip(poses[:-1], poses[1:]))
                if ratio <= 1.0:
                    break
                n = max(n + 1, int(np.ceil(n * ratio)))
            else:
                raise PlanningFailed("cannot space the grip-site waypoints within max_step/max_rot_step")
            out.extend(qs)
        return np.array(out)


class _Validity:
    """State validity of one query: within joint limits and free of invalidating contacts.

    Contacts present at the start are tolerated within ``escape`` (joint-space
    L2) of it, and the ``goal_mask`` pairs within ``goal_radius`` (m) of the target.
    """

    def __init__(self, checker, lower, upper, start, start_mask, escape, target_pos, goal_mask, goal_radius):
        self.checker, self.lower, self.upper = checker, lower, upper
        self.start, self.start_mask, self.escape = start, start_mask, escape
        self.target_pos, self.goal_mask, self.goal_radius = target_pos, goal_mask, goal_radius
        self.calls = 0

    def __call__(self, q: np.ndarray) -> bool:
        self.calls += 1
        if np.any(q < self.lower) or np.any(q > self.upper):
            return False
        site = self.checker.set_joints(q)
        extra = None
        if self.goal_mask is not None and np.linalg.norm(site[:3, 3] - self.target_pos) < self.goal_radius:
            extra = self.goal_mask
        if self.start_mask is not None and np.linalg.norm(q - self.start) < self.escape:
            extra = self.start_mask if extra is None else (extra | self.start_mask)
        return not self.checker.colliding(extra)


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
