"""Motion planning for connect segments: the Planner protocol and its implementations."""

from __future__ import annotations

from reinforcegen_ros.planning.base import Planner, PlanningFailed, Trajectory, TrajectoryFollower

PLANNERS = ("straight_line", "ompl")


def make_planner(name: str, env, kinematics, config: dict | None = None) -> Planner:
    """Build a planner by name for a task environment."""
    if name == "straight_line":
        from reinforcegen_ros.planning.straight_line import StraightLinePlanner

        return StraightLinePlanner(kinematics.forward, **(config or {}).get("straight_line", {}))
    if name == "ompl":
        from reinforcegen_ros.planning.ompl_planner import OMPLPlanner

        return OMPLPlanner(env, (config or {}).get("ompl", config))
    raise ValueError(f"unknown planner '{name}'; choose one of {', '.join(PLANNERS)}")


__all__ = ["PLANNERS", "Planner", "PlanningFailed", "Trajectory", "TrajectoryFollower", "make_planner"]
