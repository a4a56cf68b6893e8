"""Checkpoint interop: Hugging Face BERT / MegatronBert <-> megabio, TP resharding, `load_pretrained`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from megabio.config import ModelConfig
from megabio.convert.checkpoint import (
    LATEST,
    read_checkpoint,
    read_checkpoint_config,
    shard_for_rank,
    write_checkpoint,
)
from megabio.convert.hf import (
    BERT,
    MEGATRON_BERT,
    ConversionError,
    config_from_hf,
    config_to_hf,
    export_hf,
    export_hf_task,
    import_hf,
)
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState
from megabio.parallel.sharding import is_tensor_parallel

MEGATRON_LM = "megatron-lm"
FORMATS = ("megabio", BERT, MEGATRON_BERT, MEGATRON_LM)  # megatron-lm is a source only
_MODEL_TYPES = {"bert": BERT, "megatron-bert": MEGATRON_BERT}
# Entries of a megabio checkpoint that resharding rewrites or cannot carry: the TP tracker's RNG streams are
# per TP rank, so a resharded run re-seeds them.
_NOT_CARRIED = ("checkpoint_format", "config", "iteration", "tensor_model_parallel_size", "optimizer", "rng",
                "tokenizer")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConversionError(f"{path}: cannot read JSON ({error})") from None


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (directory / "model.safetensors").is_file():
        return load_file(directory / "model.safetensors")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(_read_json(index)["weight_map"].values())):
            state.update(load_file(directory / shard))
        return state
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConversionError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def detect_format(path: str | os.PathLike) -> str:
    directory = Path(path)
    if (directory / LATEST).is_file():
        return "megabio"
    if (directory / "config.json").is_file():
        model_type = _read_json(directory / "config.json").get("model_type")
        if model_type not in _MODEL_TYPES:
            raise ConversionError(f"{directory}/config.json: model_type={model_type!r} is not one of "
                                  f"{sorted(_MODEL_TYPES)}")
        return _MODEL_TYPES[model_type]
    raise ConversionError(f"{directory}: not a checkpoint directory (no {LATEST} or config.json)")


def _hf_lower_case(directory: Path) -> bool:
    tokenizer_config = directory / "tokenizer_config.json"
    return bool(_read_json(tokenizer_config).get("do_lower_case", True)) if tokenizer_config.is_file() else True


def _check_vocab_file(vocab: Path, config: ModelConfig) -> None:
    if not vocab.is_file():
        raise ConversionError(f"{vocab}: vocabulary file not found beside the weights")
    lines = sum(1 for _ in open(vocab, encoding="utf-8"))
    if lines != config.vocab_size:
        raise ConversionError(f"{vocab} has {lines} tokens but the weights have vocab_size={config.vocab_size}")


def read_any(path: str | os.PathLike, fmt: str, vocab_file: str | os.PathLike | None = None,
             lower_case: bool | None = None, trust_checkpoint: bool = False
             ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(full megabio state dict, config, info) from a checkpoint directory in format `fmt`."""
    directory = Path(path)
    if not directory.exists():
        raise ConversionError(f"{directory}: no such file or directory")
    if fmt == MEGATRON_LM:
        from megabio.convert.megatron_lm import read_megatron_lm

        vocab = Path(vocab_file) if vocab_file else directory / "vocab.txt"
        if not vocab.is_file():
            raise ConversionError(f"{vocab}: Megatron-LM checkpoints need their vocab.txt (pass --vocab-file)")
        vocab_size = sum(1 for _ in open(vocab, encoding="utf-8"))
        state, config, report = read_megatron_lm(directory, vocab_size, trust_checkpoint)
        return state, config, {"lower_case": bool(lower_case), "vocab": vocab, "report": report}
    if fmt == "megabio":
        state, config, rest = read_checkpoint(directory)
        training = {k: v for k, v in rest.items() if k not in _NOT_CARRIED}
        return state, config, {"lower_case": rest.get("tokenizer", {}).get("lower_case", False),
                               "vocab": directory / "vocab.txt", "report": {"mapped": sorted(state)},
                               "iteration": rest.get("iteration", "release"), "optimizer": rest.get("optimizer"),
                               "training": training}
    if fmt not in (BERT, MEGATRON_BERT):
        raise ConversionError(f"--from {fmt!r}: choose one of {', '.join(FORMATS)}")
    hf_config = _read_json(directory / "config.json")
    expected = "megatron-bert" if fmt == MEGATRON_BERT else "bert"
    if hf_config.get("model_type") != expected:
        raise ConversionError(f"{directory}/config.json: model_type={hf_config.get('model_type')!r}, "
                              f"--from {fmt} expects {expected!r}")
    config = config_from_hf(hf_config, fmt)
    reference = BertForPretraining(config).state_dict()
    state, report = import_hf(_read_hf_weights(directory), config, fmt, reference)
    return state, config, {"lower_case": _hf_lower_case(directory), "vocab": directory / "vocab.txt",
                           "report": report}


def _write_hf(directory: Path, state: dict[str, torch.Tensor], config: ModelConfig, fmt: str, vocab: Path,
              lower_case: bool, task: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    tensors, hf_config = export_hf(state, config, fmt), config_to_hf(config, fmt)
    if task is not None:
        tensors, task_fields = export_hf_task(state, config, fmt, task)
        hf_config.update(task_fields)

    if directory.exists():
        raise ConversionError(f"{directory} exists; choose a new output directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(vocab, tmp / "vocab.txt")
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "BertTokenizer", "do_lower_case": lower_case,
             "model_max_length": config.max_position_embeddings}, indent=2) + "\n", encoding="utf-8")
        (tmp / "special_tokens_map.json").write_text(json.dumps(
            {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert(source_format: str, target_format: str, input_path: str | os.PathLike, output: str | os.PathLike,
            target_tensor_model_parallel_size: int = 1, vocab_file: str | os.PathLike | None = None,
            lower_case: bool | None = None, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Convert a checkpoint directory; returns the report (mapped, initialised, ignored, padded rows)."""
    if target_format not in FORMATS or target_format == MEGATRON_LM:
        raise ConversionError(f"--to {target_format!r}: choose one of megabio, {BERT}, {MEGATRON_BERT}")
    state, config, info = read_any(input_path, source_format, vocab_file, lower_case, trust_checkpoint)
    _check_vocab_file(Path(info["vocab"]), config)
    if target_format == "megabio":
        config.check_tensor_parallel(target_tensor_model_parallel_size)
        write_checkpoint(output, state, config, target_tensor_model_parallel_size,
                         iteration=info.get("iteration", "release"), optimizer=info.get("optimizer"),
                         extra={"tokenizer": {"lower_case": info["lower_case"]}, **info.get("training", {})},
                         vocab_file=info["vocab"])
    else:
        if (target_format == BERT) != (config.layernorm_order == "post"):
            raise ConversionError(f"--to {target_format} needs a {'post' if target_format == BERT else 'pre'}-LN "
                                  f"model; this one is {config.layernorm_order}-LN "
                                  f"(use --to {MEGATRON_BERT if target_format == BERT else BERT})")
        _write_hf(Path(output), state, config, target_format, Path(info["vocab"]), info["lower_case"],
                  info.get("training", {}).get("task"))
    report = dict(info["report"])
    if target_format == "megabio" and info.get("optimizer") is not None:
        report["optimizer_state"] = f"resharded to TP={target_tensor_model_parallel_size}"
        report["rng_states"] = "not carried (per TP rank): a resumed run re-seeds dropout"
    report["padded_vocab_rows"] = config.padded_vocab_size(target_tensor_model_parallel_size) - config.vocab_size
    return report


def pretrained_config(path: str | os.PathLike) -> tuple[ModelConfig, Path]:
    """(config, vocab.txt) of a megabio or Hugging Face checkpoint directory, without reading its weights."""
    directory = Path(path)
    fmt = detect_format(directory)
    if fmt == "megabio":
        config = read_checkpoint_config(directory)
    else:
        config = config_from_hf(_read_json(directory / "config.json"), fmt)
    _check_vocab_file(directory / "vocab.txt", config)
    return config, directory / "vocab.txt"


def _read_shard(path: str | os.PathLike, state: ParallelState, config: ModelConfig | None = None
                ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(this TP rank's shard, the checkpoint's config, info) of a megabio or Hugging Face checkpoint; only
    this rank's shard is built, for a model of `config`'s shape (default: the checkpoint's)."""
    full, source_config, info = read_any(path, detect_format(path))
    _check_vocab_file(Path(info["vocab"]), source_config)
    shard = shard_for_rank(full, config or source_config, state.tp_size, state.tp_rank)
    return shard, source_config, info


def pretrained_shard(path: str | os.PathLike, config: ModelConfig, state: ParallelState) -> dict[str, torch.Tensor]:
    """This TP rank's shard, for a model of `config`'s shape, of a megabio or Hugging Face checkpoint."""
    return _read_shard(path, state, config)[0]


def load_pretrained(path: str | os.PathLike, parallel_state: ParallelState | None = None):
    """(BertForPretraining, tokenizer) from a megabio checkpoint or a Hugging Face BERT / MegatronBert
    directory. The tokenizer (HF `tokenizers` WordPiece) encodes text to the ids the model expects."""
    from megabio.tokenizer.wordpiece import load_wordpiece

    state_ = parallel_state or ParallelState.single()
    shard, config, info = _read_shard(path, state_)
    model = BertForPretraining(config, state_)
    missing = [n for n, p in model.named_parameters() if n not in shard]
    if missing:
        raise ConversionError(f"{path}: the checkpoint lacks {missing[0]}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.shape != shard[name].shape:
                kind = "sharded" if is_tensor_parallel(param) else "replicated"
                raise ConversionError(f"{path}: {name} has shape {tuple(shard[name].shape)}, the model's "
                                      f"{kind} parameter {tuple(param.shape)}")
            param.copy_(shard[name])
    return model, load_wordpiece(info["vocab"], info["lower_case"])
