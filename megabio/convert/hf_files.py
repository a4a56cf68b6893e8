"""Hugging Face checkpoint directories on disk: config.json, weights (safetensors, sharded safetensors or a
`pytorch_model.bin` read with weights_only), tokenizer settings, and writing them for `from_pretrained`."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from megabio.config import ModelConfig
from megabio.convert.hf import ConversionError, config_to_hf, export_hf, export_hf_task
from megabio.io.atomic import atomic_directory
from megabio.io.text import read_json as read_json_file


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file (config.json, tokenizer_config.json, a shard index)."""
    value = read_json_file(path, "Hugging Face", ConversionError)
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: not a JSON object")
    return value


def _read_pickled_weights(path: Path, trust_checkpoint: bool) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError:
        raise ConversionError(
            f"{path}: refused to unpickle: the file holds objects other than tensors, and unpickling them could "
            f"run code. Use the model's model.safetensors, or, only for a file you trust, trust_checkpoint "
            f"(--trust-checkpoint)") from None
    except (RuntimeError, EOFError) as error:
        raise ConversionError(f"{path}: unreadable ({error})") from None


def read_hf_weights(directory: Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if (directory / "model.safetensors").is_file():
            return load_file(directory / "model.safetensors")
        index = directory / "model.safetensors.index.json"
        if index.is_file():
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(read_json(index)["weight_map"].values())):
                state.update(load_file(directory / shard))
            return state
    except SafetensorError as error:
        raise ConversionError(f"{directory}: unreadable safetensors ({error})") from None
    if (directory / "pytorch_model.bin").is_file():
        return _read_pickled_weights(directory / "pytorch_model.bin", trust_checkpoint)
    raise ConversionError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def hf_lower_case(directory: Path) -> bool:
    tokenizer_config = directory / "tokenizer_config.json"
    return bool(read_json(tokenizer_config).get("do_lower_case", True)) if tokenizer_config.is_file() else True


def write_hf(directory: Path, state: dict[str, torch.Tensor], config: ModelConfig, fmt: str, vocab: Path,
             lower_case: bool, task: dict[str, Any] | None = None) -> None:
    """A transformers directory (config, safetensors, vocab, tokenizer files) that appears only when complete;
    a fine-tuned model's `task` makes it a *ForTokenClassification / *ForSequenceClassification."""
    from safetensors.torch import save_file

    tensors, hf_config = export_hf(state, config, fmt), config_to_hf(config, fmt)
    if task is not None:
        tensors, task_fields = export_hf_task(state, config, fmt, task)
        hf_config.update(task_fields)
    try:
        with atomic_directory(directory) as tmp:
            save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
            (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
            shutil.copyfile(vocab, tmp / "vocab.txt")
            (tmp / "tokenizer_config.json").write_text(json.dumps(
                {"tokenizer_class": "BertTokenizer", "do_lower_case": lower_case,
                 "model_max_length": config.max_position_embeddings}, indent=2) + "\n", encoding="utf-8")
            (tmp / "special_tokens_map.json").write_text(json.dumps(
                {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                 "mask_token": "[MASK]"}, indent=2) + "\n", encoding="utf-8")
    except FileExistsError as error:
        raise ConversionError(str(error)) from None
