"""Vocabulary files: one token per line (BERT's vocab.txt)."""

from __future__ import annotations

import os

from megabio.config import ConfigError
from megabio.io.text import numbered_lines


def read_vocab(path: str | os.PathLike) -> list[str]:
    """The tokens of `path`, in id order."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: vocabulary file not found")
    return [line for _, line in numbered_lines(path)]


def check_same_vocabulary(ours: str | os.PathLike, checkpoint_vocab: str | os.PathLike) -> None:
    """`ours` must be the checkpoint's own vocabulary: the error names the first line that differs."""
    mine, theirs = read_vocab(ours), read_vocab(checkpoint_vocab)
    if mine == theirs:
        return
    if len(mine) != len(theirs):
        raise ConfigError(f"{ours} has {len(mine)} tokens, the checkpoint's {checkpoint_vocab} {len(theirs)}: "
                          f"use the checkpoint's vocabulary")
    line = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b) + 1
    raise ConfigError(f"{ours} line {line} differs from the checkpoint's {checkpoint_vocab} ({mine[line - 1]!r} vs "
                      f"{theirs[line - 1]!r}): use the checkpoint's vocabulary")
