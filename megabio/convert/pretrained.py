"""Starting a model from a pretrained checkpoint: any format megabio reads, this TP rank's shard only,
into the model class asked for (pretraining, token, sequence or span model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megabio.checkpoint import read_checkpoint_config, shard_for_rank
from megabio.config import ModelConfig
from megabio.convert.hf import ConversionError, config_from_hf
from megabio.convert.hf_files import read_json
from megabio.convert.sources import check_vocab_file, detect_format, read_any
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState

# A pretraining checkpoint's pooler sits in its binary head; sequence classifiers keep it at `pooler`.
_RENAMED = {"binary_head.pooler.weight": "pooler.weight", "binary_head.pooler.bias": "pooler.bias"}


def pretrained_config(path: str | os.PathLike) -> tuple[ModelConfig, Path]:
    """(config, vocab.txt) of a megabio or Hugging Face checkpoint directory, without reading its weights."""
    directory = Path(path)
    fmt = detect_format(directory)
    if fmt == "megabio":
        config = read_checkpoint_config(directory)
    else:
        config = config_from_hf(read_json(directory / "config.json"), fmt)
    check_vocab_file(directory / "vocab.txt", config)
    return config, directory / "vocab.txt"


def read_pretrained(path: str | os.PathLike, trust_checkpoint: bool = False
                    ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(full state dict, config, info) of a megabio or Hugging Face checkpoint, its vocabulary checked."""
    full, config, info = read_any(path, detect_format(path), trust_checkpoint=trust_checkpoint)
    check_vocab_file(Path(info["vocab"]), config)
    return full, config, info


def load_shard(model: nn.Module, full: dict[str, torch.Tensor], state: ParallelState, source: str,
               fresh_ok: tuple[str, ...] = ()) -> list[str]:
    """Load this TP rank's shard of `full` into `model`: its own parameters by name (a pretraining pooler
    renamed for sequence classifiers; other heads left out). Parameters the checkpoint lacks may only be
    those starting with `fresh_ok` (a new task head); returns them."""
    full = {**full, **{ours: full[theirs] for theirs, ours in _RENAMED.items() if theirs in full}}
    own = model.state_dict()
    shard = shard_for_rank({k: v for k, v in full.items() if k in own}, model.config, state.tp_size, state.tp_rank)
    for name, tensor in shard.items():
        if own[name].shape != tensor.shape:
            raise ConversionError(f"{source}: {name} has shape {tuple(tensor.shape)}, the model's "
                                  f"{tuple(own[name].shape)}")
    missing, _ = model.load_state_dict(shard, strict=False)
    essential = [name for name in missing if not name.startswith(fresh_ok)]
    if essential:
        raise ConversionError(f"{source}: the checkpoint lacks {essential[0]}")
    return missing


def pretrained_shard(path: str | os.PathLike, config: ModelConfig, state: ParallelState) -> dict[str, torch.Tensor]:
    """This TP rank's shard, for a model of `config`'s shape, of a megabio or Hugging Face checkpoint."""
    return shard_for_rank(read_pretrained(path)[0], config, state.tp_size, state.tp_rank)


def load_pretrained(path: str | os.PathLike, parallel_state: ParallelState | None = None,
                    model_class: type[nn.Module] = BertForPretraining, fresh_ok: tuple[str, ...] = (),
                    trust_checkpoint: bool = False, **model_options: Any):
    """(model, tokenizer, info): `model_class(config, parallel_state=..., **model_options)` with the weights
    of a megabio checkpoint or a Hugging Face BERT / MegatronBert directory (task models: also
    `head=HeadConfig(...)`, their head starting fresh when named in `fresh_ok`). The tokenizer (HF
    `tokenizers` WordPiece) encodes text to the ids the model expects; info: `vocab`, `lower_case`,
    `initialised` (parameters the checkpoint lacked), and a fine-tuned model's `task`."""
    from megabio.tokenizer.wordpiece import load_wordpiece

    state = parallel_state or ParallelState.single()
    full, config, info = read_pretrained(path, trust_checkpoint)
    model = model_class(config, parallel_state=state, **model_options)
    fresh = load_shard(model, full, state, str(path), fresh_ok)
    tokenizer = load_wordpiece(info["vocab"], info["lower_case"])
    return model, tokenizer, {"vocab": Path(info["vocab"]), "lower_case": info["lower_case"], "initialised": fresh,
                              "task": info.get("training", {}).get("task")}
