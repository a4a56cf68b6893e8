"""megabio.cpu_allocator: which malloc is active, the training hint, and re-running under tcmalloc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from megabio import cpu_allocator

needs_tcmalloc = pytest.mark.skipif(cpu_allocator.find_tcmalloc() is None,
                                    reason="tcmalloc is not installed (Debian: libtcmalloc-minimal4)")

_REPORT = "from megabio.cpu_allocator import active_allocator; print(active_allocator())"


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MEGABIO_RERUN_WITH_TCMALLOC")}
    result = subprocess.run([sys.executable, "-c", code], env={**environment, **env}, capture_output=True,
                            text=True, check=True, timeout=120)
    return result.stdout.strip()


def test_plain_process_runs_on_system_malloc():
    assert _run(_REPORT) == "system malloc"


@needs_tcmalloc
def test_preloaded_tcmalloc_is_recognised_and_silences_the_hint():
    code = _REPORT + "; from megabio.cpu_allocator import tcmalloc_hint; print(tcmalloc_hint())"
    assert _run(code, LD_PRELOAD=cpu_allocator.find_tcmalloc()).splitlines() == ["tcmalloc", "None"]


@needs_tcmalloc
def test_hint_names_the_library_to_preload():
    code = "from megabio.cpu_allocator import tcmalloc_hint; print(tcmalloc_hint())"
    assert f"LD_PRELOAD={cpu_allocator.find_tcmalloc()}" in _run(code)


@needs_tcmalloc
def test_rerun_replaces_the_process_once_under_tcmalloc():
    # Printed before and after the re-run: the first line comes from the process that is replaced.
    code = ("import os, sys; print('pid', os.getpid(), flush=True); "
            "from megabio.cpu_allocator import rerun_with_tcmalloc, active_allocator; "
            "rerun_with_tcmalloc(); print(active_allocator(), sys.argv[1:])")
    lines = _run(code).splitlines()
    assert len(lines) == 3 and lines[0] == lines[1], lines  # the same PID before and after the exec
    assert lines[2] == "tcmalloc []"
