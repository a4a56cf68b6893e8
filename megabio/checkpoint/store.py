"""Whole checkpoints on disk: written from a full state dict (sharded for any TP size) into a directory
that appears only when complete, and read back merged over TP. Plain data only: every rank file loads
with torch.load(weights_only=True)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from megabio.checkpoint.layout import CHECKPOINT_FORMAT, LATEST, CheckpointError, Iteration, rank_file, rank_files
from megabio.checkpoint.sharding import (
    merge_optimizer_shards,
    merge_shards,
    partition_dims,
    shard_for_rank,
    shard_optimizer_for_rank,
)
from megabio.config import ModelConfig
from megabio.io.atomic import atomic_directory


def write_checkpoint(directory: str | os.PathLike, full_state: dict[str, torch.Tensor], config: ModelConfig,
                     tensor_model_parallel_size: int = 1, iteration: Iteration = "release",
                     extra: dict[str, Any] | None = None, vocab_file: str | os.PathLike | None = None,
                     optimizer: dict[str, Any] | None = None) -> None:
    """Write a whole checkpoint directory (which must not exist); a full name-keyed `optimizer` state is
    sharded like the weights."""
    tp = tensor_model_parallel_size
    try:
        with atomic_directory(directory) as tmp:
            dims = partition_dims(config, tp)
            for rank in range(tp):  # one shard in memory at a time
                path = rank_file(tmp, iteration, rank)
                path.parent.mkdir(parents=True)
                payload = {"checkpoint_format": CHECKPOINT_FORMAT, "config": config.to_dict(),
                           "model": shard_for_rank(full_state, config, tp, rank, dims), "iteration": iteration,
                           "tensor_model_parallel_size": tp, **(extra or {})}
                if optimizer is not None:
                    payload["optimizer"] = shard_optimizer_for_rank(optimizer, config, tp, rank, dims)
                torch.save(payload, path)
            if vocab_file is not None:
                shutil.copyfile(vocab_file, tmp / "vocab.txt")
            (tmp / LATEST).write_text(f"{iteration}\n", encoding="utf-8")
    except FileExistsError as error:
        raise CheckpointError(str(error)) from None


def load_rank_file(path: Path) -> dict[str, Any]:
    """One TP rank's payload; anything but a megabio checkpoint file is refused without unpickling code."""
    not_ours = (f"{path}: not a megabio checkpoint (convert Megatron-LM checkpoints with "
                f"`megabio convert --from megatron-lm`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # e.g. Megatron-LM's pickled argparse args
        raise CheckpointError(not_ours) from None
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: unreadable ({error}); the file is truncated or not a torch file") from None
    if not isinstance(payload, dict) or payload.get("checkpoint_format") != CHECKPOINT_FORMAT:
        raise CheckpointError(not_ours)
    return payload


def read_checkpoint_config(directory: str | os.PathLike) -> ModelConfig:
    """The model config of the latest checkpoint in `directory` (weights memory-mapped, not read)."""
    return ModelConfig.from_dict(load_rank_file(rank_files(directory)[0])["config"])


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(full state dict, config, the rest of rank 0's file) of the latest checkpoint in `directory`; a training
    checkpoint's optimizer state comes merged over TP (full, keyed by parameter name)."""
    loaded = [load_rank_file(f) for f in rank_files(directory)]
    first = loaded[0]
    config = ModelConfig.from_dict(first["config"])
    full = merge_shards([item["model"] for item in loaded], config)
    rest = {k: v for k, v in first.items() if k != "model"}
    if first.get("optimizer") is not None:
        rest["optimizer"] = merge_optimizer_shards([item["optimizer"] for item in loaded], config)
    return full, config, rest
