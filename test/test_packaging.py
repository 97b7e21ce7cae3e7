"""Packaging: one install for pip and colcon, both ROS packages discoverable."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_manifests():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "reinforcegen_ros"
    assert root.find("export/build_type").text == "ament_python"
    msgs = ET.parse(ROOT / "src/reinforcegen_msgs/package.xml").getroot()
    assert msgs.findtext("name") == "reinforcegen_msgs"
    assert msgs.find("export/build_type").text == "ament_cmake"


def test_colcon_discovers_both_packages():
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon not installed (make installs colcon-core and colcon-ros)")
    run = lambda *a: subprocess.run([colcon, "list", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = dict(line.split("\t")[0:3:2] for line in run("--base-paths", ".", "src/reinforcegen_msgs").splitlines())
    assert found == {"reinforcegen_ros": "(ros.ament_python)", "reinforcegen_msgs": "(ros.ament_cmake)"}
    # without the explicit base paths colcon stops at the root package (documented in the README)
    assert "reinforcegen_msgs" not in run()


def test_cli_help_without_ros():
    out = subprocess.run([sys.executable, "-m", "reinforcegen_ros.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demos" in out.stdout and "rclpy" not in sys.modules
