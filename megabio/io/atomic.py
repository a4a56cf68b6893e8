"""Writes that never leave a half-written file or directory where the result belongs: everything is
written under a temporary sibling name and renamed into place (a rename within a directory is atomic).
Every write-then-rename in megabio goes through these helpers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _parent(path: Path) -> Path:
    parent = path.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: the directory {parent} does not exist")
    return parent


class StagedFile:
    """A file written at `staging` (a hidden sibling of `path`) and renamed onto `path` by `commit`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        _parent(self.path)
        self.staging = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")

    def commit(self) -> None:
        os.replace(self.staging, self.path)

    def discard(self) -> None:
        self.staging.unlink(missing_ok=True)


@contextmanager
def _staged(staged: StagedFile | StagedDirectory) -> Iterator[Path]:
    try:
        yield staged.staging
        staged.commit()
    except BaseException:
        staged.discard()
        raise


def atomic_file(path: str | os.PathLike):
    """A context yielding a temporary path to write; on success it replaces `path`, on failure it is removed."""
    return _staged(StagedFile(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class StagedDirectory:
    """A directory built at `staging` and renamed onto `path` by `commit`.

    `staging_name` fixes the staging name (several processes writing into one directory must agree on
    it); by default it is unique. With `replace`, an existing `path` is replaced at commit, else it
    must not exist (checked now and at commit).
    """

    def __init__(self, path: str | os.PathLike, replace: bool = False, staging_name: str | None = None) -> None:
        self.path, self.replace = Path(path), replace
        parent = _parent(self.path)
        if self.path.exists() and not replace:
            raise FileExistsError(f"{self.path} exists; choose a new output directory")
        self.staging = parent / staging_name if staging_name else \
            Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.path.name}.tmp-"))
        self.staging.mkdir(exist_ok=True)

    def commit(self) -> None:
        if self.path.exists():
            if not self.replace:
                raise FileExistsError(f"{self.path} appeared while it was being written; nothing replaced")
            previous = self.staging.with_name(self.staging.name + ".previous")
            os.replace(self.path, previous)  # out of the way first, so `path` is never half-removed
            os.replace(self.staging, self.path)
            shutil.rmtree(previous) if previous.is_dir() else previous.unlink()
        else:
            os.replace(self.staging, self.path)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def atomic_directory(path: str | os.PathLike, replace: bool = False):
    """A context yielding a temporary directory to fill; on success it becomes `path`, on failure it is
    removed."""
    return _staged(StagedDirectory(path, replace))
