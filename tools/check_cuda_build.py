"""Check a CUDA build of megabio's kernels without a GPU: the library loads and every operator that has a
CPU kernel also has a CUDA kernel, except those that are CPU-only by design.

    python tools/check_cuda_build.py BUILD_DIR     (the --build-lib of `setup.py build_ext`)
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import torch

# On GPU the vocabulary cross entropy runs its torch reference (megabio.kernels.softmax_cross_entropy): its
# CPU kernels exist to avoid the float copies of the logits that the CPU's eager ops make.
CPU_ONLY = {"megabio::softmax_cross_entropy_statistics", "megabio::softmax_cross_entropy_backward"}


def registered(dispatch_key: str) -> set[str]:
    return {name.split(".")[0] for name in torch._C._dispatch_get_registrations_for_dispatch_key(dispatch_key)
            if name.startswith("megabio::")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir")
    args = parser.parse_args()
    libraries = glob.glob(os.path.join(args.build_dir, "megabio", "_C*.so"))
    if len(libraries) != 1:
        print(f"error: expected one megabio/_C*.so under {args.build_dir}, found {libraries}", file=sys.stderr)
        return 1
    torch.ops.load_library(libraries[0])
    cpu, cuda = registered("CPU"), registered("CUDA")
    missing = sorted(cpu - cuda - CPU_ONLY)
    if not cpu or missing:
        print(f"error: operators without a CUDA kernel: {missing or 'no operators registered'}", file=sys.stderr)
        return 1
    print(f"CUDA build OK: {libraries[0]} (torch {torch.__version__}, CUDA {torch.version.cuda}); "
          f"{len(cuda)} operators with CPU and CUDA kernels: {', '.join(sorted(cuda))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
