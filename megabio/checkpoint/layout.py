"""Where a checkpoint's files are: Megatron's layout.

`DIR/latest_checkpointed_iteration.txt` names the iteration (`release` for converted or fine-tuned
weights) and `DIR/<iter_0000100 | release>/mp_rank_XX/model_optim_rng.pt` holds each TP rank's shard.
"""

from __future__ import annotations

import os
from pathlib import Path

from megabio.config import ConfigError
from megabio.io.atomic import atomic_write_text

CHECKPOINT_FORMAT = "megabio/1"
LATEST = "latest_checkpointed_iteration.txt"
RANK_FILE = "model_optim_rng.pt"

Iteration = int | str
"""A training iteration, or "release"."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be read or written as asked; the message names the file and the fix."""


def iteration_dir(iteration: Iteration) -> str:
    return "release" if iteration == "release" else f"iter_{int(iteration):07d}"


def rank_file(directory: str | os.PathLike, iteration: Iteration, tp_rank: int) -> Path:
    return Path(directory) / iteration_dir(iteration) / f"mp_rank_{tp_rank:02d}" / RANK_FILE


def read_latest(directory: str | os.PathLike) -> Iteration | None:
    """The iteration the `latest` pointer names (an int, or "release"), or None without a pointer."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    text = pointer.read_text(encoding="utf-8").strip()
    if text == "release":
        return text
    if not text.isdigit():
        raise CheckpointError(f"{pointer}: {text!r} is neither an iteration nor 'release'")
    return int(text)


def write_latest(directory: str | os.PathLike, iteration: Iteration) -> None:
    atomic_write_text(Path(directory) / LATEST, f"{iteration}\n")


def rank_files(directory: str | os.PathLike) -> list[Path]:
    """The TP rank files of the latest checkpoint in `directory`, in rank order."""
    directory = Path(directory)
    iteration = read_latest(directory)
    if iteration is None:
        raise CheckpointError(f"{directory}: no {LATEST}; not a megabio / Megatron checkpoint directory")
    files = sorted((directory / iteration_dir(iteration)).glob(f"mp_rank_*/{RANK_FILE}"))
    if not files:
        raise CheckpointError(f"{directory}: {LATEST} names {iteration!r}, but no mp_rank_*/{RANK_FILE} there")
    return files
