# Two commands on a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"      # the local CPU wheel first, so nothing pulls CUDA builds
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "robomimic==0.3.0"   # only its dataset loader, to check compatibility; it wants torchvision otherwise
	@# software rendering for images rendered from saved states (EGL is tried first, OSMesa as fallback)
	-@command -v apt-get >/dev/null && ! dpkg -s libosmesa6 >/dev/null 2>&1 && \
	  (apt-get install -y -qq libosmesa6 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null 2>&1)) || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reinforcegen demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/control_rate.py

clean:
	rm -rf $(VENV) build install log *.egg-info src/*.egg-info

# ROS 2: a virtual environment that sees a sourced ROS 2's Python packages (rclpy, launch, rosidl) through
# --system-site-packages, with this project and the `ros` extra (what rosidl, launch_testing and colcon need).
#   source /opt/ros/jazzy/setup.bash && make ros-venv && source .venv-ros/bin/activate   (then the README's colcon build)
# ROS_PYTHON must be the interpreter ROS was built for (/usr/bin/python3 for the binary packages).
ROS_VENV   ?= .venv-ros
ROS_PYTHON ?= /usr/bin/python3
.PHONY: ros-venv
ros-venv:
	@test -n "$$ROS_DISTRO" || { echo "ros-venv: no ROS 2 sourced; run: source /opt/ros/<distro>/setup.bash (or your ROS build's install/setup.bash), then make ros-venv"; exit 1; }
	$(ROS_PYTHON) -m venv --system-site-packages $(ROS_VENV)
	$(ROS_VENV)/bin/python -m pip install -q --upgrade pip
	$(ROS_VENV)/bin/python -m pip install -q "torch==2.13.0"
	$(ROS_VENV)/bin/python -m pip install -q -e ".[test,ros]"
	$(ROS_VENV)/bin/python -m pip install -q --no-deps "robomimic==0.3.0"
	$(ROS_VENV)/bin/python -c "import rclpy, launch_testing, rosidl_parser, lark, osrf_pycommon, em; print('ros-venv: ROS 2 $$ROS_DISTRO seen from $(ROS_VENV)')"
