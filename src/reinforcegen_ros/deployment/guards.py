"""Input and output guards of the deployment layer: nothing unsafe reaches the robot.

Every check returns a :class:`Check` ``(ok, reason)`` and never raises, so a
node can log the reason, hold the robot still and stay alive:

- :class:`CommandGuard` filters the 7-D end-effector commands (normalised delta
  pose + gripper): NaN/inf and grossly out-of-range values are rejected, the
  rest is clipped to [-1, 1]; a command whose speed exceeds the velocity limits
  or that would move the grip site out of the workspace box (or further out of
  it) is rejected. A rejected command becomes :func:`hold_action`.
- :func:`check_pose` validates a received pose (finite, unit quaternion, known
  ``frame_id``).
- :class:`StampGate` rejects out-of-order or duplicate stamps of one stream and
  :func:`check_fresh` stale (or future) ones.

Limits come from ``config/ros/deployment.yaml`` (section ``guards``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

NS = 1_000_000_000


class Check(NamedTuple):
    """Outcome of a check: ``ok`` and, when not ok, why."""

    ok: bool
    reason: str = ""


OK = Check(True, "")


def hold_action(gripper: float = -1.0) -> np.ndarray:
    """The hold-still command: zero delta pose, gripper as last commanded."""
    action = np.zeros(7)
    action[6] = float(np.clip(gripper, -1.0, 1.0)) if np.isfinite(gripper) else -1.0
    return action


@dataclass
class GuardConfig:
    """Command limits (``guards`` section of ``config/ros/deployment.yaml``)."""

    clip_tolerance: float = 0.5  # components beyond 1 + this are rejected (a bug), smaller excess is clipped
    max_position_step: float = 0.05  # m per control step at normalised delta 1.0 (the OSC_POSE scaling)
    max_rotation_step: float = 0.5  # rad per control step at normalised delta 1.0
    control_rate: float = 20.0  # Hz
    max_linear_speed: float = 1.8  # m/s of the commanded grip-site motion
    max_angular_speed: float = 17.5  # rad/s of the commanded rotation
    velocity_mode: str = "reject"  # reject: a too fast command is refused (hold still); scale: it is slowed to the limit
    workspace_min: list[float] = field(default_factory=lambda: [-0.6, -0.6, 0.78])  # world frame box (m)
    workspace_max: list[float] = field(default_factory=lambda: [0.6, 0.6, 1.6])
    known_frames: list[str] = field(default_factory=lambda: ["world"])

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "GuardConfig":
        """From a dict; unknown keys are an error."""
        from reinforcegen_ros.deployment.config import settings_from_dict

        out = settings_from_dict(cls, cfg, "guards")
        if out.velocity_mode not in ("reject", "scale"):
            raise ValueError(f"guards.velocity_mode must be reject or scale, got '{out.velocity_mode}'")
        return out


class CommandGuard:
    """Safety filter of end-effector commands (see module docstring)."""

    def __init__(self, config: GuardConfig | None = None):
        self.config = config or GuardConfig()
        self.lo = np.asarray(self.config.workspace_min, dtype=float)
        self.hi = np.asarray(self.config.workspace_max, dtype=float)
        if self.lo.shape != (3,) or self.hi.shape != (3,) or np.any(self.lo >= self.hi):
            raise ValueError("guards.workspace_min/max must be 3 numbers each with min < max")

    def filter(self, action, eef_pos: np.ndarray | None = None) -> tuple[np.ndarray | None, Check]:
        """The clipped command, or ``None`` with the reason it is rejected."""
        cfg = self.config
        try:
            a = np.asarray(action, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            return None, Check(False, "command is not numeric")
        if a.shape != (7,):
            return None, Check(False, f"command must have 7 values (6 delta pose + gripper), got {a.size}")
        if not np.all(np.isfinite(a)):
            return None, Check(False, "command contains NaN or inf")
        worst = float(np.abs(a).max())
        if worst > 1.0 + cfg.clip_tolerance:
            return None, Check(False, f"command component {worst:.3g} is far outside [-1, 1]")
        a = np.clip(a, -1.0, 1.0)
        note = ""
        for part, step, limit, unit, what in ((slice(0, 3), cfg.max_position_step, cfg.max_linear_speed, "m/s", "linear"),
                                              (slice(3, 6), cfg.max_rotation_step, cfg.max_angular_speed, "rad/s", "angular")):
            speed = float(np.linalg.norm(a[part])) * step * cfg.control_rate
            if speed > limit + 1e-9:
                if cfg.velocity_mode == "reject":
                    return None, Check(False, f"{what} speed {speed:.3g} {unit} exceeds the limit {limit:g} {unit}")
                a[part] *= limit / speed
                note = f"{what} speed {speed:.3g} {unit} scaled to the limit {limit:g} {unit}"
        if eef_pos is not None:
            check = self.check_workspace(np.asarray(eef_pos, dtype=float), a[:3] * cfg.max_position_step)
            if not check.ok:
                return None, check
        return a, Check(True, note)

    def check_workspace(self, eef_pos: np.ndarray, delta: np.ndarray) -> Check:
        """Whether moving the grip site from ``eef_pos`` by ``delta`` keeps it in the box (or moves it back in)."""
        if eef_pos.shape != (3,) or not np.all(np.isfinite(eef_pos)):
            return Check(False, "end-effector position unknown or not finite")
        nxt = eef_pos + delta
        outside = (nxt < self.lo) | (nxt > self.hi)
        if not np.any(outside):
            return OK
        # outside after the step: allowed only if every violated axis moves back toward the box
        toward = np.where(nxt < self.lo, delta > 0, delta < 0)
        if np.all(toward[outside]) and np.all(((eef_pos < self.lo) | (eef_pos > self.hi))[outside]):
            return OK
        axes = "".join("xyz"[i] for i in np.flatnonzero(outside))
        return Check(False, f"command would move the grip site to {np.round(nxt, 3).tolist()}, outside the workspace box in {axes}")


def check_pose(position, quaternion_xyzw, frame_id: str, known_frames: Sequence[str] = ("world",)) -> Check:
    """A received pose is usable: known frame, finite values, non-degenerate quaternion."""
    if frame_id not in known_frames:
        return Check(False, f"unknown frame '{frame_id}' (expected one of {', '.join(known_frames)})")
    try:
        p = np.asarray(position, dtype=float).reshape(-1)
        q = np.asarray(quaternion_xyzw, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return Check(False, "pose is not numeric")
    if p.shape != (3,) or q.shape != (4,):
        return Check(False, "pose needs 3 position and 4 quaternion values")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        return Check(False, "pose contains NaN or inf")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 0.01:
        return Check(False, f"pose quaternion has norm {norm:.3g}, not 1")
    return OK


def check_matrix_pose(pose) -> Check:
    """A 4x4 pose matrix is finite and rigid."""
    try:
        m = np.asarray(pose, dtype=float)
    except (TypeError, ValueError):
        return Check(False, "pose is not numeric")
    if m.shape != (4, 4):
        return Check(False, f"pose must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        return Check(False, "pose contains NaN or inf")
    rot = m[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0 or np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-9:
        return Check(False, "pose is not a rigid transform")
    return OK


def check_fresh(stamp_ns: int, now_ns: int, max_age: float, what: str = "message", max_future: float = 0.1) -> Check:
    """``stamp_ns`` is at most ``max_age`` s old and not more than ``max_future`` s ahead of ``now_ns``."""
    age = (int(now_ns) - int(stamp_ns)) / NS
    if age > max_age:
        return Check(False, f"{what} is stale ({age:.3f} s old, limit {max_age:g} s)")
    if -age > max_future:
        return Check(False, f"{what} is stamped {-age:.3f} s in the future")
    return OK


class StampGate:
    """Accepts only strictly increasing stamps of one stream (out-of-order and duplicate messages are dropped)."""

    def __init__(self, what: str):
        self.what = what
        self.last_ns: int | None = None

    def accept(self, stamp_ns: int) -> Check:
        """Accept ``stamp_ns`` (and remember it) if it is newer than every accepted one."""
        stamp_ns = int(stamp_ns)
        if stamp_ns <= 0:
            return Check(False, f"{self.what} has no stamp")
        if self.last_ns is not None and stamp_ns <= self.last_ns:
            kind = "duplicate" if stamp_ns == self.last_ns else "out-of-order"
            return Check(False, f"{kind} {self.what} (stamp {stamp_ns} ns <= last {self.last_ns} ns)")
        self.last_ns = stamp_ns
        return OK

    def reset(self) -> None:
        self.last_ns = None


def accept_command_stamp(gate: StampGate, stamp_ns: int, action) -> Check:
    """A robot side's stamp rule for commands: only strictly later stamps, except a hold (zero delta) stamped like the
    last accepted command, which replaces that command (an emergency stop's hold must win over the motion it stops)."""
    check = gate.accept(stamp_ns)
    if check.ok or (not np.any(np.asarray(action, dtype=float)[:6]) and int(stamp_ns) == gate.last_ns):
        return OK
    return check
