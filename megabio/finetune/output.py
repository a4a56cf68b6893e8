"""A fine-tuning run's output directory, staged under a hidden sibling name and renamed into place at the
end, so a failed or interrupted run leaves nothing half-written where the results belong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from megabio.config import ConfigError
from megabio.io.atomic import StagedDirectory
from megabio.parallel import barrier


class OutputDir:
    """`path` must not exist, or be empty (or `overwrite`); its parent must exist and be writable. Only
    `writer` (the first rank) touches the disk; every rank calls `open`, `commit` and `discard`."""

    def __init__(self, path: str | os.PathLike, writer: bool, overwrite: bool = False) -> None:
        self.path, self.writer, self.staged = Path(path), writer, None
        parent = self.path.absolute().parent
        if not parent.is_dir():
            raise ConfigError(f"output directory {path}: its parent {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"output directory {path}: {parent} is not writable")
        if self.path.exists() and not overwrite and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(f"output directory {path} exists and is not empty: choose a new one or overwrite it")

    def open(self) -> Path:
        """The staging directory every rank writes into (its name is shared, so ranks agree on it)."""
        staging = f".{self.path.name}.partial"
        if self.writer:
            shutil.rmtree(self.path.absolute().parent / staging, ignore_errors=True)  # left by a killed run
            self.staged = StagedDirectory(self.path, replace=True, staging_name=staging)
        barrier()
        return self.path.absolute().parent / staging

    def write_json(self, name: str, data: Any) -> None:
        if self.staged is not None:
            (self.staged.staging / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        if self.staged is not None:
            (self.staged.staging / name).write_text(text, encoding="utf-8")

    def commit(self) -> None:
        barrier()
        if self.staged is not None:
            self.staged.commit()
        barrier()

    def discard(self) -> None:
        if self.staged is not None:
            self.staged.discard()
