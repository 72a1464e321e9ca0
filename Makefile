# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean nuscenes-oracle nuscenes-export-oracle

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch CPU comes from the machine's local wheel (pip finds it; uv/poetry would fetch a CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgefuse demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check edgefuse tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/logs_bench.py

# The nuScenes metric oracle: the official devkit in its own environment (it pins numpy < 2, which the
# project's .venv does not). Writes tests/nuscenes_oracle/values.json, which CI compares against; CI itself
# never needs the devkit. See tests/nuscenes_oracle/README.md.
NUSC_VENV := .venv-nuscenes
NUSC_DEVKIT ?= nuscenes-devkit==1.2.0

$(NUSC_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(NUSC_VENV)
	$(NUSC_VENV)/bin/python -m pip install -q --upgrade pip
	$(NUSC_VENV)/bin/python -m pip install -q '$(NUSC_DEVKIT)'
	touch $@

nuscenes-oracle: $(NUSC_VENV)/.installed
	$(NUSC_VENV)/bin/python tests/nuscenes_oracle/make_values.py

# The devkit's boxes of a fixed simulated nuScenes export (tests/nuscenes_oracle/README.md): the export is
# written with the project's .venv, read with the devkit's.
NUSC_EXPORT := build/nuscenes-export-oracle
nuscenes-export-oracle: $(NUSC_VENV)/.installed $(STAMP)
	rm -rf $(NUSC_EXPORT)
	$(PY) -m edgefuse.cli sim export --format nuscenes --version v1.0-oracle --seed 7 --duration 1.0 \
		$(NUSC_EXPORT) --json > /dev/null
	$(NUSC_VENV)/bin/python tests/nuscenes_oracle/check_export.py $(NUSC_EXPORT) v1.0-oracle \
		scenario='"default"' seed=7 duration_s=1.0 > tests/nuscenes_oracle/export_boxes.json

clean:
	rm -rf $(VENV) $(NUSC_VENV) demo-output
