"""Collection guard of the ROS 2 tests: a module whose ROS pieces are missing is skipped, with the missing pieces named.

The launch tests need a sourced ROS 2 (Jazzy or Humble) whose Python packages the
test's interpreter can import (``make ros-venv``), with their own dependencies
(``osrf_pycommon``, ``lark``: the ``ros`` extra), and the colcon-built workspace
(``source install/setup.bash``). Any piece that does not import (missing, or
broken: built for another Python, a dependency missing) skips the module before
it is imported, so collection never errors.

One failure cannot be caught here: pytest loads the plugins that installed
packages declare (ROS's ``launch_testing`` and ``launch_pytest``) before any
conftest, so a ``launch_testing`` without ``osrf_pycommon`` stops pytest at start-up
("No module named 'osrf_pycommon'"). Install the ``ros`` extra, or run the
ROS-free tests with ``-p no:launch_testing -p no:launch_pytest``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

#: (module, attribute it must have: the repository's launch/ folder also imports as a namespace package "launch")
LAUNCH = [("launch", "LaunchDescription"), ("launch_ros", "actions"), ("osrf_pycommon", None), ("lark", None),
          ("ament_index_python.packages", "get_package_share_directory")]
REQUIRED = {
    "test_launch_files.py": LAUNCH,
    "test_hybrid_launch.py": [("rclpy", "init"), *LAUNCH, ("launch_testing", None), ("launch_pytest", "fixture"),
                              ("rosidl_runtime_py.utilities", "get_message"), ("control_msgs.action", "FollowJointTrajectory"),
                              ("diagnostic_msgs.msg", "DiagnosticArray")],
    "test_shipped_agent.py": [("rclpy", "init"), *LAUNCH, ("launch_testing", None), ("launch_pytest", "fixture"),
                              ("control_msgs.action", "FollowJointTrajectory")],
    "test_answer_timeout.py": [("rclpy", "init"), *LAUNCH, ("launch_testing", None), ("launch_pytest", "fixture"),
                               ("control_msgs.action", "FollowJointTrajectory")],
    "test_signals.py": [("rclpy", "init"), *LAUNCH, ("launch_pytest", "fixture"), ("control_msgs.action", "FollowJointTrajectory")],
}
#: colcon-built packages each module needs (on AMENT_PREFIX_PATH after ``source install/setup.bash``)
BUILT = {"test_launch_files.py": ["reinforcegen_ros"], "test_hybrid_launch.py": ["reinforcegen_ros", "reinforcegen_msgs"],
         "test_shipped_agent.py": ["reinforcegen_ros", "reinforcegen_msgs"], "test_answer_timeout.py": ["reinforcegen_ros", "reinforcegen_msgs"],
         "test_signals.py": ["reinforcegen_ros", "reinforcegen_msgs"]}


def missing_pieces(required) -> list[str]:
    """``module: why`` for each required module that does not import (or lacks its attribute)."""
    out = []
    for name, attr in required:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a broken install (wrong Python, missing dependency) skips too
            out.append(f"{name} ({type(exc).__name__}: {exc})")
            continue
        if attr is not None and not hasattr(module, attr):
            out.append(f"{name} (no '{attr}': not ROS 2's package)")
    return out


def unbuilt_packages(names) -> list[str]:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    out = []
    for name in names:
        try:
            get_package_share_directory(name)
        except PackageNotFoundError:
            out.append(name)
    return out


def skip_reason(filename: str) -> str:
    """Why the test module ``filename`` cannot run here ('' if it can)."""
    missing = missing_pieces(REQUIRED.get(filename, []))
    if missing:
        return (f"{filename}: ROS 2 pieces missing, so this launch test runs only on a machine with ROS 2 Jazzy or Humble "
                "(source its setup.bash, make ros-venv): " + "; ".join(missing))
    unbuilt = unbuilt_packages(BUILT.get(filename, []))
    if unbuilt:
        return f"{filename}: {', '.join(unbuilt)} not built: colcon build (see the README's ROS 2 section) and source install/setup.bash"
    return ""


class SkippedRosModule(pytest.File):
    """Stands in for a test module that cannot be imported here: one test that skips with the reason (a
    skipped test, so ``pytest test/ros`` exits 0 rather than 5, "no tests collected")."""

    reason = ""

    def collect(self):
        item = SkippedRosTest.from_parent(self, name=self.path.stem)
        item.reason = self.reason
        yield item


class SkippedRosTest(pytest.Item):
    reason = ""

    def runtest(self):
        pytest.skip(self.reason)

    def reportinfo(self):
        return self.path, 0, self.name


def pytest_pycollect_makemodule(module_path: Path, parent):
    if module_path.name not in REQUIRED:
        return None
    reason = skip_reason(module_path.name)
    if not reason:
        return None
    item = SkippedRosModule.from_parent(parent, path=module_path)
    item.reason = reason
    return item
