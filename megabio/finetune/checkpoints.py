"""Fine-tuned models on disk: saved as megabio checkpoints that carry their task, head and label map, and
read back at any TP size."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from megabio.checkpoint import merge_shards, read_checkpoint, write_checkpoint
from megabio.config import ConfigError
from megabio.convert import load_pretrained, load_shard
from megabio.model.task_models import TASK_MODELS, HeadConfig, TaskKind
from megabio.parallel import ParallelState, barrier
from megabio.tokenizer.wordpiece import load_wordpiece


def task_model_from_pretrained(kind: TaskKind, path: str | os.PathLike, head: HeadConfig, state: ParallelState,
                               seed: int, **model_options: Any):
    """(task model, tokenizer, info) with the encoder (and pooler) of the checkpoint at `path` and a fresh
    head drawn after torch.manual_seed(seed); see `megabio.convert.load_pretrained`."""
    torch.manual_seed(seed)
    return load_pretrained(path, state, TASK_MODELS[kind], fresh_ok=("head.", "pooler."), head=head,
                           **model_options)


def save_task_model(directory: str | os.PathLike, model: torch.nn.Module, state: ParallelState,
                    vocab_file: str | os.PathLike, lower_case: bool, task: dict[str, Any]) -> None:
    """Collective: gather the TP shards and write one TP=1 checkpoint (from the first rank) with the task
    description (`kind`, `name`, `head`, `labels`, `options`, ...), the tokenizer settings and vocabulary."""
    shard = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    shards = [shard]
    if state.tp_size > 1:
        shards = [None] * state.tp_size
        dist.all_gather_object(shards, shard, group=state.tp_group)
    if state.tp_rank == 0 and state.dp_rank == 0:
        full = merge_shards(shards, model.config)
        write_checkpoint(directory, full, model.config, extra={"tokenizer": {"lower_case": lower_case},
                                                                "task": task}, vocab_file=vocab_file)
    barrier()


def load_task_model(path: str | os.PathLike, state: ParallelState | None = None):
    """(task model in eval mode, tokenizer, task description) of a fine-tuned megabio model directory."""
    state = state or ParallelState.single()
    full, config, rest = read_checkpoint(path)
    task = rest.get("task")
    if not task:
        raise ConfigError(f"{path}: a pretrained checkpoint, not a fine-tuned model (no task head)")
    model = TASK_MODELS[task["kind"]](config, HeadConfig(**task["head"]), state, **task.get("options", {}))
    load_shard(model, full, state, str(path))
    lower_case = rest.get("tokenizer", {}).get("lower_case", False)
    return model.eval(), load_wordpiece(Path(path) / "vocab.txt", lower_case), task


def model_directory(path: str | os.PathLike) -> Path:
    """A fine-tuning output directory or the model directory inside it."""
    path = Path(path)
    return path / "model" if (path / "model").is_dir() else path
