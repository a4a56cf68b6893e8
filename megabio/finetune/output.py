"""A fine-tuning run's output directory, written under a hidden sibling name and renamed into place at the
end, so a failed or interrupted run leaves nothing half-written where the results belong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist

from megabio.config import ConfigError


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class OutputDir:
    """`path` must not exist, or be empty (or `overwrite`); its parent must exist and be writable. Only
    `writer` (the first rank) touches the disk; every rank calls `open`, `commit` and `discard`."""

    def __init__(self, path: str | os.PathLike, writer: bool, overwrite: bool = False, flag: str = "--output-dir"):
        self.path, self.writer = Path(path), writer
        parent = self.path.absolute().parent
        if not parent.is_dir():
            raise ConfigError(f"{flag} {path}: the parent directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"{flag} {path}: {parent} is not writable")
        if self.path.exists() and not overwrite and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(f"{flag} {path} exists and is not empty: choose a new directory or pass --overwrite")
        self.staging = parent / f".{self.path.name}.partial"

    def open(self) -> Path:
        if self.writer:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()
        _barrier()
        return self.staging

    def write_json(self, name: str, data: Any) -> None:
        if self.writer:
            (self.staging / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            (self.staging / name).write_text(text, encoding="utf-8")

    def commit(self) -> None:
        _barrier()
        if self.writer:
            if self.path.exists():
                shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            os.replace(self.staging, self.path)
        _barrier()

    def discard(self) -> None:
        if self.writer:
            shutil.rmtree(self.staging, ignore_errors=True)
