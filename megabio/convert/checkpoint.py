"""megabio checkpoints on disk, in Megatron's layout, and their tensor-parallel shards.

`DIR/latest_checkpointed_iteration.txt` names the iteration (`release` for converted weights), and
`DIR/<iter_0000100 | release>/mp_rank_XX/model_optim_rng.pt` holds each TP rank's shard as plain data
(`model` state dict, `config` dict, `iteration`, `tokenizer` settings), loadable with weights_only=True.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from megabio.config import ModelConfig
from megabio.convert.hf import ConversionError
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState

CHECKPOINT_FORMAT = "megabio/1"
LATEST = "latest_checkpointed_iteration.txt"
VOCAB_ROW_PARAMS = ("bert.embeddings.word_embeddings.weight", "lm_head.bias")


def iteration_dir(iteration: int | str) -> str:
    return "release" if iteration == "release" else f"iter_{int(iteration):07d}"


def partition_dims(config: ModelConfig, tp: int) -> dict[str, int | None]:
    """Each parameter's TP partition dim (None: replicated), read off a TP-sharded model on meta."""
    with torch.device("meta"):
        model = BertForPretraining(config, ParallelState(tp_size=tp, tp_rank=0))
    return {name: (p.partition_dim if getattr(p, "tensor_model_parallel", False) else None)
            for name, p in model.named_parameters()}


def shard_for_rank(full: dict[str, torch.Tensor], config: ModelConfig, tp: int, rank: int,
                   dims: dict[str, int | None] | None = None) -> dict[str, torch.Tensor]:
    """TP rank `rank`'s shard of a full state dict (vocab rows >= vocab_size), the vocab padded for that TP."""
    dims = partition_dims(config, tp) if dims is None else dims
    padded = config.padded_vocab_size(tp)
    shard = {}
    for name, tensor in full.items():
        if name in VOCAB_ROW_PARAMS:
            real = tensor[: config.vocab_size]
            tensor = torch.cat([real, real.new_zeros((padded - real.shape[0], *real.shape[1:]))])
        dim = dims.get(name)
        shard[name] = (tensor.chunk(tp, dim=dim)[rank] if dim is not None else tensor).clone()
    return shard


def shard_state(full: dict[str, torch.Tensor], config: ModelConfig, tp: int) -> list[dict[str, torch.Tensor]]:
    """All `tp` shards of a full state dict."""
    dims = partition_dims(config, tp)
    return [shard_for_rank(full, config, tp, rank, dims) for rank in range(tp)]


def merge_shards(shards: list[dict[str, torch.Tensor]], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The full state dict (vocab padded for TP=1) of TP shards."""
    tp = len(shards)
    dims = partition_dims(config, tp)
    full = {}
    for name in shards[0]:
        dim = dims.get(name)
        tensor = torch.cat([s[name] for s in shards], dim=dim) if dim is not None else shards[0][name]
        if name in VOCAB_ROW_PARAMS:
            real = tensor[: config.vocab_size]
            tensor = torch.cat([real, real.new_zeros((config.padded_vocab_size(1) - config.vocab_size,
                                                      *real.shape[1:]))])
        full[name] = tensor
    return full


def _param_shaped(optimizer_state: dict[str, dict[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
    """{state key: {param name: tensor}} of the entries shaped like their parameter (Adam's moments)."""
    by_key: dict[str, dict[str, torch.Tensor]] = {}
    for name, entries in optimizer_state.items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                by_key.setdefault(key, {})[name] = value
    return by_key


def _with_param_shaped(optimizer: dict[str, Any], by_key: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """`optimizer` (name-keyed) with its parameter-shaped entries replaced by those of `by_key`."""
    state = {name: {key: by_key[key][name] if key in by_key and name in by_key[key] else value
                    for key, value in entries.items()}
             for name, entries in optimizer["state"].items()}
    return {"state": state, "param_groups": optimizer["param_groups"]}


def merge_optimizer_shards(optimizers: list[dict[str, Any]], config: ModelConfig) -> dict[str, Any]:
    """The full name-keyed optimizer state of TP shards: moments merged like their parameters, step counts and
    hyper-parameters taken from rank 0 (they are equal on every rank)."""
    shards = [_param_shaped(o["state"]) for o in optimizers]
    return _with_param_shaped(optimizers[0], {key: merge_shards([s[key] for s in shards], config)
                                              for key in shards[0]})


def shard_optimizer_for_rank(optimizer: dict[str, Any], config: ModelConfig, tp: int, rank: int,
                             dims: dict[str, int | None]) -> dict[str, Any]:
    """TP rank `rank`'s shard of a full name-keyed optimizer state."""
    return _with_param_shaped(optimizer, {key: shard_for_rank(full, config, tp, rank, dims)
                                          for key, full in _param_shaped(optimizer["state"]).items()})


def write_checkpoint(directory: str | os.PathLike, full_state: dict[str, torch.Tensor], config: ModelConfig,
                     tensor_model_parallel_size: int = 1, iteration: int | str = "release",
                     extra: dict[str, Any] | None = None, vocab_file: str | os.PathLike | None = None,
                     optimizer: dict[str, Any] | None = None) -> None:
    """Write a whole checkpoint directory to a temporary sibling and rename it into place; a full name-keyed
    `optimizer` state is sharded like the weights."""
    directory = Path(directory)
    if directory.exists():
        raise ConversionError(f"{directory} exists; choose a new output directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        dims = partition_dims(config, tensor_model_parallel_size)
        for rank in range(tensor_model_parallel_size):  # one shard in memory at a time
            shard = shard_for_rank(full_state, config, tensor_model_parallel_size, rank, dims)
            path = tmp / iteration_dir(iteration) / f"mp_rank_{rank:02d}" / "model_optim_rng.pt"
            path.parent.mkdir(parents=True)
            payload = {"checkpoint_format": CHECKPOINT_FORMAT, "model": shard, "config": config.to_dict(),
                       "iteration": iteration, "tensor_model_parallel_size": tensor_model_parallel_size,
                       **(extra or {})}
            if optimizer is not None:
                payload["optimizer"] = shard_optimizer_for_rank(optimizer, config, tensor_model_parallel_size,
                                                                rank, dims)
            torch.save(payload, path)
        if vocab_file is not None:
            shutil.copyfile(vocab_file, tmp / "vocab.txt")
        (tmp / LATEST).write_text(f"{iteration}\n", encoding="utf-8")
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _latest_files(directory: Path) -> list[Path]:
    latest = directory / LATEST
    if not latest.is_file():
        raise ConversionError(f"{directory}: no {LATEST}; not a megabio / Megatron checkpoint directory")
    iteration = latest.read_text(encoding="utf-8").strip()
    files = sorted((directory / iteration_dir(iteration if iteration == "release" else int(iteration)))
                   .glob("mp_rank_*/model_optim_rng.pt"))
    if not files:
        raise ConversionError(f"{directory}: {LATEST} names {iteration!r}, but no mp_rank_*/model_optim_rng.pt there")
    return files


def _load_rank_file(path: Path) -> dict[str, Any]:
    not_ours = (f"{path}: not a megabio checkpoint (convert Megatron-LM checkpoints with "
                f"`megabio convert --from megatron-lm`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # e.g. Megatron-LM's pickled argparse args
        raise ConversionError(not_ours) from None
    if not isinstance(payload, dict) or payload.get("checkpoint_format") != CHECKPOINT_FORMAT:
        raise ConversionError(not_ours)
    return payload


def read_checkpoint_config(directory: str | os.PathLike) -> ModelConfig:
    """The model config of the latest checkpoint in `directory` (weights memory-mapped, not read)."""
    return ModelConfig.from_dict(_load_rank_file(_latest_files(Path(directory))[0])["config"])


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(full state dict, config, the rest of rank 0's file) of the latest checkpoint in `directory`; a training
    checkpoint's optimizer state comes merged over TP (full, keyed by parameter name)."""
    loaded = [_load_rank_file(f) for f in _latest_files(Path(directory))]
    first = loaded[0]
    config = ModelConfig.from_dict(first["config"])
    full = merge_shards([item["model"] for item in loaded], config)
    rest = {k: v for k, v in first.items() if k not in ("model",)}
    if first.get("optimizer") is not None:
        rest["optimizer"] = merge_optimizer_shards([item["optimizer"] for item in loaded], config)
    return full, config, rest
