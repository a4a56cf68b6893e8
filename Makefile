# `make test` and `make demo` set everything up on a fresh machine: a virtual environment in .venv,
# torch (TORCH, the CPU wheel by default) and megabio with its test extras.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.megabio-installed

# `make cuda-check` compiles and links the CUDA kernels (no GPU needed) in a separate venv with torch's
# CUDA build, for the architectures in CUDA_ARCHS.
CUDA_VENV ?= .venv-cuda
CUDA_TORCH ?= torch==2.14.1
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCHS ?= 8.0;9.0
CUDA_BUILD := build/cuda-check

.PHONY: install test lint demo bench cuda-check docker-check clean

install: $(STAMP)

# The kernels compile at install time, so a change under csrc/ reinstalls. seqeval ships only an sdist whose
# version pip reads only with build isolation (without it pip falls back to 0.0.x), so it goes in first.
$(STAMP): setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/data/*.cpp)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip setuptools wheel ninja
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet "seqeval>=1.2"
	$(PYTHON) -m pip install --quiet --no-build-isolation -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(PYTHON) -m ruff check .

test: lint
	$(PYTHON) -m pytest -q

# The main job on its embedded default; DATA_DIR=../shared/data (or any folder laid out alike) uses real text.
demo: $(STAMP)
	$(PYTHON) -m megabio.demo $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

bench: $(STAMP)
	$(PYTHON) benchmarks/bench_model.py

cuda-check:
	test -x $(CUDA_VENV)/bin/python || python3 -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel ninja numpy "$(CUDA_TORCH)"
	# The CUDA wheel ships the CUDA headers it was built with (cuSPARSE and others) in nvidia/cu*/include.
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" MEGABIO_BUILD_CUDA=1 \
	CPLUS_INCLUDE_PATH="$$($(CUDA_VENV)/bin/python -c 'import glob, nvidia; print(":".join(glob.glob(nvidia.__path__[0] + "/cu*/include")))')" \
	MAX_JOBS=2 $(CUDA_VENV)/bin/python setup.py --quiet build_ext --build-lib $(CUDA_BUILD) --build-temp $(CUDA_BUILD)/tmp
	$(CUDA_VENV)/bin/python tools/check_cuda_build.py $(CUDA_BUILD)

# Builds the image where a Docker daemon (and NVIDIA's registry) can be reached; tests/test_dockerfile.py checks
# the Dockerfile against setup.py and this Makefile everywhere.
docker-check:
	@if docker info >/dev/null 2>&1; then docker build -t megabio:check .; \
	else echo "docker-check: no Docker daemon on this machine; nothing built"; fi

clean:
	rm -rf $(VENV) $(CUDA_VENV) build *.egg-info
