"""setuptools shim so that colcon (ament_python) and pip install the same package.

Metadata lives in pyproject.toml; this file adds the ROS 2 data files
(package manifest, ament index marker, launch and config files).
"""

from glob import glob

from setuptools import setup

PACKAGE = "reinforcegen_ros"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/tasks", glob("config/tasks/*.yaml")),
    ],
)
