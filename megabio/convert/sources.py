"""Reading any checkpoint megabio understands into one form: a full (TP=1) megabio state dict, its
ModelConfig, and what else it carries (vocabulary, casing, iteration, optimizer state, task)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from megabio.checkpoint import LATEST, read_checkpoint
from megabio.config import ModelConfig
from megabio.convert.hf import BERT, MEGATRON_BERT, ConversionError, config_from_hf, import_hf
from megabio.convert.hf_files import hf_lower_case, read_hf_weights, read_json
from megabio.io.vocab import read_vocab
from megabio.model import BertForPretraining

MEGATRON_LM = "megatron-lm"
FORMATS = ("megabio", BERT, MEGATRON_BERT, MEGATRON_LM)  # megatron-lm is a source only
_MODEL_TYPES = {"bert": BERT, "megatron-bert": MEGATRON_BERT}
# Entries of a megabio checkpoint that resharding rewrites or cannot carry: the TP tracker's RNG streams are
# per TP rank, so a resharded run re-seeds them.
_NOT_CARRIED = ("checkpoint_format", "config", "iteration", "tensor_model_parallel_size", "optimizer", "rng",
                "tokenizer")


def detect_format(path: str | os.PathLike) -> str:
    directory = Path(path)
    if not directory.exists():
        raise ConversionError(f"{directory}: no such file or directory")
    if (directory / LATEST).is_file():
        return "megabio"
    if (directory / "config.json").is_file():
        model_type = read_json(directory / "config.json").get("model_type")
        if model_type not in _MODEL_TYPES:
            raise ConversionError(f"{directory}/config.json: model_type={model_type!r} is not one of "
                                  f"{sorted(_MODEL_TYPES)}")
        return _MODEL_TYPES[model_type]
    raise ConversionError(f"{directory}: not a checkpoint directory (no {LATEST} or config.json)")


def check_vocab_file(vocab: Path, config: ModelConfig) -> None:
    if not vocab.is_file():
        raise ConversionError(f"{vocab}: vocabulary file not found beside the weights")
    size = len(read_vocab(vocab))
    if size != config.vocab_size:
        raise ConversionError(f"{vocab} has {size} tokens but the weights have vocab_size={config.vocab_size}")


def read_any(path: str | os.PathLike, fmt: str, vocab_file: str | os.PathLike | None = None,
             lower_case: bool | None = None, trust_checkpoint: bool = False
             ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(full megabio state dict, config, info) from a checkpoint directory in format `fmt`. info: `vocab`,
    `lower_case`, `report`, and for megabio checkpoints `iteration`, `optimizer` and `training` (the other
    entries a resharded checkpoint keeps, such as a fine-tuned model's `task`)."""
    directory = Path(path)
    if not directory.exists():
        raise ConversionError(f"{directory}: no such file or directory")
    if fmt == MEGATRON_LM:
        from megabio.convert.megatron_lm import read_megatron_lm

        vocab = Path(vocab_file) if vocab_file else directory / "vocab.txt"
        if not vocab.is_file():
            raise ConversionError(f"{vocab}: Megatron-LM checkpoints need their vocab.txt (give its path as "
                                  f"vocab_file, --vocab-file)")
        state, config, report = read_megatron_lm(directory, len(read_vocab(vocab)), trust_checkpoint)
        return state, config, {"lower_case": bool(lower_case), "vocab": vocab, "report": report}
    if fmt == "megabio":
        state, config, rest = read_checkpoint(directory)
        training = {k: v for k, v in rest.items() if k not in _NOT_CARRIED}
        return state, config, {"lower_case": rest.get("tokenizer", {}).get("lower_case", False),
                               "vocab": directory / "vocab.txt", "report": {"mapped": sorted(state)},
                               "iteration": rest.get("iteration", "release"), "optimizer": rest.get("optimizer"),
                               "training": training}
    if fmt not in (BERT, MEGATRON_BERT):
        raise ConversionError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    hf_config = read_json(directory / "config.json")
    expected = "megatron-bert" if fmt == MEGATRON_BERT else "bert"
    if hf_config.get("model_type") != expected:
        raise ConversionError(f"{directory}/config.json: model_type={hf_config.get('model_type')!r}, "
                              f"format {fmt} expects {expected!r}")
    config = config_from_hf(hf_config, fmt)
    reference = BertForPretraining(config).state_dict()
    state, report = import_hf(read_hf_weights(directory, trust_checkpoint), config, fmt, reference)
    return state, config, {"lower_case": hf_lower_case(directory), "vocab": directory / "vocab.txt",
                           "report": report}
