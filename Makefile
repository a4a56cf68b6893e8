# `make test` and `make demo` set everything up on a fresh machine: a virtual environment in .venv,
# torch (TORCH, the CPU wheel by default) and megabio with its test extras.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.megabio-installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip setuptools wheel
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet --no-build-isolation -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(PYTHON) -m ruff check .

test: lint
	$(PYTHON) -m pytest -q

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/torchrun --standalone --nproc-per-node 2 examples/quickstart.py

bench: $(STAMP)
	$(PYTHON) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info
