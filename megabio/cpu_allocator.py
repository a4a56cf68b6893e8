"""Which malloc this process runs on, and how to run on tcmalloc instead.

On CPU, PyTorch allocates every activation and gradient afresh each step. glibc's malloc returns large
freed blocks to the kernel, so the next step's tensors touch new pages, and each first touch is a page
fault: on virtual machines a microsecond or more per 4 KiB, as long as the memory-bound kernels' own work.
tcmalloc keeps freed memory for reuse; PyTorch's own CPU launcher (`torch.backends.xeon.run_cpu`) preloads
it for the same reason. It must be loaded before the process starts (`LD_PRELOAD`), so megabio does not
switch by itself: training logs a hint, and the benchmarks re-run themselves on it (`rerun_with_tcmalloc`).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

# Debian / Ubuntu: libtcmalloc-minimal4 or libgoogle-perftools4; conda: gperftools.
_TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")
_KNOWN_ALLOCATORS = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}
_RERUN_MARK = "MEGABIO_RERUN_WITH_TCMALLOC"


def find_tcmalloc() -> str | None:
    """The shared-library name of tcmalloc that the dynamic loader finds here, or None."""
    for name in _TCMALLOC_LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def active_allocator() -> str:
    """'tcmalloc', 'jemalloc' or 'mimalloc' when one is loaded into this process, else 'system malloc'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return "system malloc"
    for library, name in _KNOWN_ALLOCATORS.items():
        if library in maps:
            return name
    return "system malloc"


def _tcmalloc_to_preload() -> str | None:
    """tcmalloc's library name when it is installed and this process runs on the system malloc."""
    return find_tcmalloc() if active_allocator() == "system malloc" else None


def tcmalloc_hint() -> str | None:
    """A one-line suggestion to preload tcmalloc, or None when a caching allocator is already active or
    tcmalloc is not installed."""
    library = _tcmalloc_to_preload()
    if library is None:
        return None
    return (f"CPU memory allocator: system malloc; LD_PRELOAD={library} (tcmalloc) avoids re-faulting the "
            f"pages of every step's tensors and speeds up CPU training")


def rerun_with_tcmalloc() -> None:
    """Replaces this process with the same command under tcmalloc (same PID, so launchers are unaffected),
    when tcmalloc is installed and not yet active; otherwise returns and the process carries on as it is."""
    library = _tcmalloc_to_preload()
    if library is None or os.environ.get(_RERUN_MARK):
        return
    env = dict(os.environ, **{_RERUN_MARK: "1"})
    env["LD_PRELOAD"] = " ".join(filter(None, [library, os.environ.get("LD_PRELOAD")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


__all__ = ["active_allocator", "find_tcmalloc", "rerun_with_tcmalloc", "tcmalloc_hint"]
