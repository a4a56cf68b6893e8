"""Where the shared benchmark data lives (../shared/data beside the repository, or MEGABIO_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """The path under the shared data folder, or skip the test (with the reason) when it is absent."""
    root = Path(os.environ.get("MEGABIO_SHARED_DATA", DEFAULT))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set MEGABIO_SHARED_DATA)")
    return path
