"""Scripted demonstrators: privileged-state waypoint programs, one per task."""

from reinforcegen_ros.demos.scripted.engine import DemoFailed, ScriptedDemonstrator, Waypoint, frozen

__all__ = ["DemoFailed", "ScriptedDemonstrator", "Waypoint", "frozen"]
