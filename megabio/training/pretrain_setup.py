"""What a pretraining run decides before its first step, as library calls: the model config (from a preset,
an explicit shape or a checkpoint to start from), the vocabulary checks, the dataset, the save directory,
and whether to resume or to start from pretrained weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from megabio.checkpoint import latest_iteration
from megabio.config import ConfigError, ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings, BlendedDataset, parse_data_path
from megabio.io.atomic import atomic_write_text
from megabio.io.vocab import check_same_vocabulary
from megabio.parallel import ParallelState
from megabio.training.config import TrainConfig

_SHAPE = ("num_layers", "hidden_size", "num_attention_heads")


def resolve_model_config(vocab_size: int, seq_length: int, preset: str | None = None,
                         shape: dict[str, int | None] | None = None, init_from: str | None = None,
                         vocab_file: str | None = None, **options: Any) -> ModelConfig:
    """The model to train. With `init_from`, the checkpoint's shape (a preset or `shape`, if given, must agree)
    and `vocab_file` must be its vocabulary; else a preset, or `shape` (num_layers, hidden_size,
    num_attention_heads; ffn 4h). `options` (dropout, binary head, recomputation, ...) apply in every case."""
    shape = {k: v for k, v in (shape or {}).items() if v is not None}
    common = dict(vocab_size=vocab_size, **options)
    if init_from:
        from megabio.convert import pretrained_config

        config, checkpoint_vocab = pretrained_config(init_from)
        wanted = {**(ModelConfig.from_preset(preset).to_dict() if preset else {}), **shape}
        for key in (*_SHAPE, "ffn_hidden_size"):
            if key in wanted and wanted[key] != getattr(config, key):
                raise ConfigError(f"the checkpoint {init_from} has {key}={getattr(config, key)}, but "
                                  f"{wanted[key]} was asked for: leave the shape out or choose a matching checkpoint")
        if vocab_file is not None:
            check_same_vocabulary(vocab_file, checkpoint_vocab)
        config = config.replace(**common)
    elif preset:
        config = ModelConfig.from_preset(preset, **common)
    else:
        if set(shape) != set(_SHAPE):
            raise ConfigError("the model needs a preset, a checkpoint to start from, or all of num_layers, "
                              "hidden_size and num_attention_heads")
        config = ModelConfig(**shape, ffn_hidden_size=4 * shape["hidden_size"],
                             max_position_embeddings=max(seq_length, 512), **common)
    if seq_length > config.max_position_embeddings:
        raise ConfigError(f"seq_length {seq_length} exceeds the model's max_position_embeddings="
                          f"{config.max_position_embeddings}: shorten it or choose a model with more positions")
    return config


def check_data_vocabulary(prefix: str, data: BertDataset, vocab_size: int) -> None:
    """Ids at or past the vocabulary size mean the data was preprocessed with another vocabulary."""
    sample = [data.data[i] for i in range(min(len(data.data), 1000))]
    top = max((int(s.max()) for s in sample if len(s)), default=-1)
    if top >= vocab_size:
        raise ConfigError(f"{prefix}: token id {top} is past the vocabulary's {vocab_size} entries: preprocess "
                          f"the data with this vocabulary")


def build_pretraining_dataset(data_path: Sequence[str], vocab: list[str], config: TrainConfig,
                              settings: BertSampleSettings):
    """One BertDataset, or a BlendedDataset of several (`data_path`: PREFIX, or WEIGHT PREFIX pairs), each
    checked against the vocabulary, with as many samples as `config`'s run consumes."""
    weighted = parse_data_path(list(data_path))
    datasets = [BertDataset(prefix, vocab, settings) for _, prefix in weighted]
    for (_, prefix), data in zip(weighted, datasets, strict=True):
        check_data_vocabulary(prefix, data, len(vocab))
    if len(datasets) == 1:
        return datasets[0]
    return BlendedDataset(datasets, [w for w, _ in weighted], config.train_iters * config.global_batch_size)


def prepare_save_directory(directory: str | os.PathLike, vocab_file: str | os.PathLike) -> None:
    """A writable checkpoint directory with the run's vocab.txt beside the checkpoints (so they load and
    convert as they are); one that holds another vocabulary's checkpoints is refused."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"checkpoint directory {directory}: not writable ({error})") from None
    kept, text = directory / "vocab.txt", Path(vocab_file).read_text(encoding="utf-8")
    if not kept.is_file():
        atomic_write_text(kept, text)  # every rank may write it: same text, atomic rename
    elif kept.read_text(encoding="utf-8") != text:
        raise ConfigError(f"{directory} holds checkpoints of another vocabulary ({kept} differs from "
                          f"{vocab_file})")


def initial_weights(config: TrainConfig, model: ModelConfig, state: ParallelState
                    ) -> dict[str, torch.Tensor] | None:
    """Pretrained weights (this TP rank's shard) to start from, or None: a run resumes from `config.load`
    when it holds a checkpoint, so a restarted job never starts over from `config.init_from`."""
    if not config.init_from or (config.load and latest_iteration(config.load) is not None):
        return None
    from megabio.convert import pretrained_shard

    return pretrained_shard(config.init_from, model, state)
