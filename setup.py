"""setuptools shim so that colcon (ament_python) and pip install the same package.

Metadata lives in pyproject.toml; this file adds the ROS 2 data files
(package manifest, ament index marker, launch, rviz and config files) and the
node executables in ``lib/reinforcegen_ros`` where ``ros2 run`` looks for them
(``scripts/ros/<node>``; each calls ``reinforcegen_ros.nodes.<node>:main``).
Console-script entry points given here would be ignored, because
pyproject.toml declares ``[project.scripts]``.
"""

import os
from glob import glob

from setuptools import setup

PACKAGE = "reinforcegen_ros"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/ros", glob("config/ros/*.yaml")),
        (f"share/{PACKAGE}/config/tasks", glob("config/tasks/*.yaml")),
        (f"lib/{PACKAGE}", [f for f in glob("scripts/ros/*") if os.path.isfile(f)]),
    ],
)
