"""What the launch tests that run the graph share: ROS 2's pieces, or a skip of the importing module.

Imported at the top of a test module: where rclpy, launch_pytest or the colcon-built packages are
missing, the import skips that module (``conftest.py`` names the missing pieces first).
"""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed: the launch tests run on a machine with ROS 2 Jazzy or Humble")
launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest is not installed (part of ROS 2's launch)")

import launch  # noqa: E402  (ROS 2's; the repository's launch/ folder is only a namespace package)
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

try:
    SHARE = Path(get_package_share_directory("reinforcegen_ros"))
    get_package_share_directory("reinforcegen_msgs")
except PackageNotFoundError:
    pytest.skip("reinforcegen_ros/reinforcegen_msgs are not built: run colcon build and source install/setup.bash", allow_module_level=True)


def include(launch_file: str, **arguments: str):
    """``IncludeLaunchDescription`` of one of the package's launch files with ``arguments``."""
    return launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(SHARE / "launch" / launch_file)), launch_arguments=arguments.items()
    )


def graph_description(*actions):
    """The launch description of a test: ``actions``, then launch_pytest's ReadyToTest."""
    return launch.LaunchDescription([*actions, launch_pytest.actions.ReadyToTest()])


def wait_for(future, timeout: float, poll: float = 0.05):
    """The result of an rclpy future spun by another thread; a failed assertion after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(poll)
    assert future.done(), f"no answer within {timeout} s"
    return future.result()


@contextmanager
def goal_client(name: str, on_status):
    """A test node spun by a thread: ``on_status`` gets each /stage_status; yields (ExecuteTask client,
    the bridge's reset client, the ExecuteTask type)."""
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from reinforcegen_msgs.action import ExecuteTask
    from reinforcegen_msgs.msg import StageStatus
    from reinforcegen_msgs.srv import ResetScene

    rclpy.init()
    node = rclpy.create_node(name)
    node.create_subscription(StageStatus, "/stage_status", on_status, 100)
    execute = ActionClient(node, ExecuteTask, "/execute_task")
    reset = node.create_client(ResetScene, "/robosuite_bridge/reset")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield execute, reset, ExecuteTask
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
