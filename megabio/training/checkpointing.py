"""Training checkpoints in Megatron's layout: one file per TP rank (written by DP rank 0), each to a
temporary name and renamed, then the `latest` pointer, so a crash mid-write leaves the previous
checkpoint whole and pointed at. Plain data only: loadable with torch.load(weights_only=True)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from megabio.config import ConfigError
from megabio.convert.checkpoint import CHECKPOINT_FORMAT, LATEST, iteration_dir
from megabio.parallel import ParallelState


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def checkpoint_file(directory: str | os.PathLike, iteration: int, tp_rank: int) -> Path:
    return Path(directory) / iteration_dir(iteration) / f"mp_rank_{tp_rank:02d}" / "model_optim_rng.pt"


def save_checkpoint(directory: str | os.PathLike, iteration: int, state: ParallelState,
                    payload: dict[str, Any]) -> None:
    """Collective: every rank calls it; DP rank 0 of each TP rank writes its shard, then rank 0 the pointer."""
    if state.dp_rank == 0:
        path = checkpoint_file(directory, iteration, state.tp_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save({"checkpoint_format": CHECKPOINT_FORMAT, "iteration": iteration,
                    "tensor_model_parallel_size": state.tp_size, **payload}, tmp)
        os.replace(tmp, path)
    _barrier()
    if state.tp_rank == 0 and state.dp_rank == 0:
        _atomic_write_text(Path(directory) / LATEST, f"{iteration}\n")
    _barrier()


def latest_iteration(directory: str | os.PathLike) -> int | None:
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    text = pointer.read_text(encoding="utf-8").strip()
    if not text.isdigit():
        raise ConfigError(f"{pointer}: {text!r} is not a training iteration (a converted 'release' checkpoint "
                          f"starts a run with --init-from, not --load)")
    return int(text)


def load_checkpoint(directory: str | os.PathLike, state: ParallelState) -> dict[str, Any] | None:
    """This TP rank's shard of the latest checkpoint, or None when there is none."""
    iteration = latest_iteration(directory)
    if iteration is None:
        return None
    path = checkpoint_file(directory, iteration, state.tp_rank)
    if not path.is_file():
        raise ConfigError(f"{path} not found: was the checkpoint written with another TP size?")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved_tp = payload.get("tensor_model_parallel_size")
    if saved_tp != state.tp_size:
        raise ConfigError(
            f"{directory} was saved with tensor_model_parallel_size={saved_tp}, this run uses {state.tp_size}: "
            f"reshard it with `megabio convert --from megabio --to megabio --input {directory} --output NEW "
            f"--target-tensor-model-parallel-size {state.tp_size}`")
    return payload
