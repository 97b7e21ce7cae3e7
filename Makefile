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
