# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

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

clean:
	rm -rf $(VENV) demo-output
