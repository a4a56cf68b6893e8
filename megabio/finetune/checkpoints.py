"""Task models in and out: a task model started from any checkpoint megabio reads (its own, transformers
BERT / MegatronBert, converted Megatron-LM), and fine-tuned models saved as megabio checkpoints that carry
their task, head and label map (and read back at any TP size)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from megabio.config import ConfigError, ModelConfig
from megabio.convert import detect_format, read_any
from megabio.convert.checkpoint import merge_shards, read_checkpoint, shard_for_rank, write_checkpoint
from megabio.finetune.models import TASK_MODELS, HeadConfig, TaskKind, encoder_weights
from megabio.parallel import ParallelState
from megabio.tokenizer.wordpiece import load_wordpiece


def _vocabulary_lines(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def check_vocabulary(vocab_file: str | os.PathLike, checkpoint_vocab: str | os.PathLike, flag: str) -> None:
    """A vocabulary given beside a checkpoint must be the checkpoint's own: name the first differing line."""
    ours, theirs = _vocabulary_lines(vocab_file), _vocabulary_lines(checkpoint_vocab)
    if ours == theirs:
        return
    if len(ours) != len(theirs):
        raise ConfigError(f"{flag} {vocab_file} has {len(ours)} tokens, the checkpoint's {checkpoint_vocab} "
                          f"{len(theirs)}: use the checkpoint's vocabulary")
    line = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b) + 1
    raise ConfigError(f"{flag} {vocab_file} line {line} ({ours[line - 1]!r}) differs from the checkpoint's "
                      f"{checkpoint_vocab} ({theirs[line - 1]!r}): use the checkpoint's vocabulary")


def _load_shard(model: torch.nn.Module, full: dict[str, torch.Tensor], config: ModelConfig, state: ParallelState,
                source: str, allowed_missing: tuple[str, ...]) -> list[str]:
    """Load this TP rank's shard of `full` into `model`; returns the parameters left as initialised."""
    shard = shard_for_rank(full, config, state.tp_size, state.tp_rank)
    own = model.state_dict()
    for name, tensor in shard.items():
        if name in own and own[name].shape != tensor.shape:
            raise ConfigError(f"{source}: {name} has shape {tuple(tensor.shape)}, the model {tuple(own[name].shape)}")
    missing, _ = model.load_state_dict({k: v for k, v in shard.items() if k in own}, strict=False)
    essential = [name for name in missing if not name.startswith(allowed_missing)]
    if essential:
        raise ConfigError(f"{source}: the checkpoint lacks {essential[0]}")
    return missing


def task_model_from_pretrained(kind: TaskKind, path: str | os.PathLike, head: HeadConfig, state: ParallelState,
                               seed: int, **model_options: Any):
    """(task model, tokenizer, info) with the encoder (and pooler) of the checkpoint at `path` and a fresh
    head drawn after torch.manual_seed(seed). info: `vocab`, `lower_case`, `initialised` (parameter names)."""
    full, config, info = read_any(path, detect_format(path))
    torch.manual_seed(seed)
    model = TASK_MODELS[kind](config, head, state, **model_options)
    fresh = _load_shard(model, encoder_weights(full), config, state, str(path), ("head.", "pooler."))
    tokenizer = load_wordpiece(info["vocab"], info["lower_case"])
    return model, tokenizer, {"vocab": Path(info["vocab"]), "lower_case": info["lower_case"], "initialised": fresh}


def save_task_model(directory: str | os.PathLike, model: torch.nn.Module, state: ParallelState,
                    vocab_file: str | os.PathLike, lower_case: bool, task: dict[str, Any]) -> None:
    """Collective: gather the TP shards and write one TP=1 checkpoint (from the first rank) with the task
    description (`kind`, `head`, `labels`, options), the tokenizer settings and the vocabulary."""
    shard = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    shards = [shard]
    if state.tp_size > 1:
        shards = [None] * state.tp_size
        dist.all_gather_object(shards, shard, group=state.tp_group)
    if state.tp_rank == 0 and state.dp_rank == 0:
        full = merge_shards(shards, model.config)
        write_checkpoint(directory, full, model.config, extra={"tokenizer": {"lower_case": lower_case},
                                                                "task": task}, vocab_file=vocab_file)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def load_task_model(path: str | os.PathLike, state: ParallelState | None = None):
    """(task model, tokenizer, task description) of a fine-tuned megabio model directory, for any TP size."""
    state = state or ParallelState.single()
    full, config, rest = read_checkpoint(path)
    task = rest.get("task")
    if not task:
        raise ConfigError(f"{path}: a pretrained checkpoint, not a fine-tuned model (no task head)")
    model = TASK_MODELS[task["kind"]](config, HeadConfig(**task["head"]), state, **task.get("options", {}))
    _load_shard(model, full, config, state, str(path), ())
    lower_case = rest.get("tokenizer", {}).get("lower_case", False)
    return model.eval(), load_wordpiece(Path(path) / "vocab.txt", lower_case), task
