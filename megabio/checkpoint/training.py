"""Training checkpoints, written and read by every rank at once: one file per TP rank (written by DP rank
0) to a temporary name and renamed, then the `latest` pointer, so a crash mid-write leaves the previous
checkpoint whole and pointed at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from megabio.checkpoint.layout import CHECKPOINT_FORMAT, CheckpointError, rank_file, read_latest, write_latest
from megabio.io.atomic import atomic_file
from megabio.parallel import ParallelState, barrier


def latest_iteration(directory: str | os.PathLike) -> int | None:
    """The training iteration to resume from in `directory`, or None when there is no checkpoint."""
    iteration = read_latest(directory)
    if iteration == "release":
        raise CheckpointError(f"{Path(directory)}: a converted 'release' checkpoint starts a run as initial weights "
                              f"(init_from), it cannot be resumed")
    return iteration


def save_checkpoint(directory: str | os.PathLike, iteration: int, state: ParallelState,
                    payload: dict[str, Any]) -> None:
    """Collective: every rank calls it; DP rank 0 of each TP rank writes its shard, then rank 0 the pointer."""
    if state.dp_rank == 0:
        path = rank_file(directory, iteration, state.tp_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            torch.save({"checkpoint_format": CHECKPOINT_FORMAT, "iteration": iteration,
                        "tensor_model_parallel_size": state.tp_size, **payload}, tmp)
    barrier()
    if state.tp_rank == 0 and state.dp_rank == 0:
        write_latest(directory, iteration)
    barrier()


def load_checkpoint(directory: str | os.PathLike, state: ParallelState) -> dict[str, Any] | None:
    """This TP rank's shard of the latest checkpoint, or None when there is none."""
    iteration = latest_iteration(directory)
    if iteration is None:
        return None
    path = rank_file(directory, iteration, state.tp_rank)
    if not path.is_file():
        raise CheckpointError(f"{path} not found: was the checkpoint written with another TP size?")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved_tp = payload.get("tensor_model_parallel_size")
    if saved_tp != state.tp_size:
        raise CheckpointError(
            f"{directory} was saved with tensor_model_parallel_size={saved_tp}, this run uses {state.tp_size}: "
            f"reshard it with `megabio convert --from megabio --to megabio --input {directory} --output NEW "
            f"--target-tensor-model-parallel-size {state.tp_size}`")
    return payload
