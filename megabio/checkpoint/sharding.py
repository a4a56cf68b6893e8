"""Tensor-parallel shards of full state dicts (weights and name-keyed Adam state): split for any TP size,
merge from any. Each parameter's partition dim is read off a sharded model; parameters a pretraining model
lacks (task heads) are replicated."""

from __future__ import annotations

from typing import Any

import torch

from megabio.config import ModelConfig
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState

VOCAB_ROW_PARAMS = ("bert.embeddings.word_embeddings.weight", "lm_head.bias")


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
