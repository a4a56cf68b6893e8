"""The Dockerfile agrees with the build: the CUDA architectures of `make cuda-check`, the build switches
setup.py reads, the files it copies, and the `megabio` entry point."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_cuda_architectures_match_the_make_check():
    arg = re.search(r'^ARG TORCH_CUDA_ARCH_LIST="([^"]+)"', DOCKERFILE, re.M).group(1)
    make = re.search(r"^CUDA_ARCHS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).strip()
    assert arg == make


def test_build_switches_are_the_ones_setup_py_reads():
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    for name in [*re.findall(r"^\s+(MEGABIO_[A-Z_]+)=", DOCKERFILE, re.M), "TORCH_CUDA_ARCH_LIST"]:
        assert name in setup, f"{name} is set in the Dockerfile but setup.py does not read it"
    assert "MEGABIO_BUILD_CUDA=1" in DOCKERFILE  # an image without CUDA kernels fails to build


def test_copied_files_exist_and_the_entry_point_is_megabio():
    for source in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which does not exist"
    assert 'ENTRYPOINT ["megabio"]' in DOCKERFILE
    assert '"megabio=megabio.cli:main"' in (ROOT / "setup.py").read_text()
    assert "tools/check_cuda_build.py" in DOCKERFILE and (ROOT / "tools" / "check_cuda_build.py").is_file()
