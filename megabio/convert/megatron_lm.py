"""Megatron-LM BERT checkpoints (such as NVIDIA's BioMegatron) into megabio, safely.

Megatron's `model_optim_rng.pt` pickles argparse args, numpy RNG state and Megatron's own enum classes, so
`torch.load(weights_only=True)` refuses it and `weights_only=False` would need Megatron installed and run
arbitrary code. Here it is loaded with weights_only and an allowlist of exactly the globals Megatron writes,
Megatron's classes replaced by inert stand-ins; anything else is refused, naming the global.
`trust_checkpoint=True` (the CLI's --trust-checkpoint) is the explicit last resort.

Key names of all versions (`transformer`/`encoder`, `attention`/`self_attention`), the QKV layouts of
`checkpoint_version` 0 (`[3, heads, head_dim]`), 1.0 (`[heads, head_dim, 3]`) and >= 2.0
(`[heads, 3, head_dim]`, megabio's), padded vocabularies and TP-sharded files are handled.
"""

from __future__ import annotations

import argparse
import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megabio.checkpoint.layout import RANK_FILE, iteration_dir, read_latest
from megabio.checkpoint.sharding import merge_shards
from megabio.config import ModelConfig
from megabio.convert.hf import ConversionError
from megabio.model import BertForPretraining


class _MegatronStandIn:
    """Takes the place of a Megatron class (an enum, mostly) while unpickling; holds what it was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


_MEGATRON_CLASSES = ("megatron.core.enums.ModelType", "megatron.model.enums.ModelType",
                     "megatron.model.enums.AttnMaskType", "megatron.model.enums.AttnType",
                     "megatron.model.enums.LayerType", "megatron.core.transformer.enums.AttnMaskType",
                     "megatron.core.transformer.enums.AttnBackend", "megatron.core.transformer.enums.ModelType")


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed: list = [np.ndarray, np.dtype, codecs.encode,
                     (reconstruct, "numpy.core.multiarray._reconstruct"),
                     (reconstruct, "numpy._core.multiarray._reconstruct"),
                     (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def _allowlist() -> list:
    stand_ins = [(type(name.rsplit(".", 1)[1], (_MegatronStandIn,), {}), name) for name in _MEGATRON_CLASSES]
    return [argparse.Namespace, *_numpy_globals(), *stand_ins]


def load_megatron_file(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """One model_optim_rng.pt, loaded with weights_only and the allowlist (or fully, if trusted)."""
    if trust_checkpoint:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(_allowlist()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        marker = "GLOBAL "
        name = message.split(marker, 1)[1].split()[0].rstrip(".") if marker in message else "an unknown object"
        raise ConversionError(
            f"{path}: refused to load: the pickle calls {name}, which is not on megabio's allowlist of what "
            f"Megatron-LM writes (only pass --trust-checkpoint if you trust where this file came from)") from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, torch.Tensor):
            flat[name] = value
    return flat


def _qkv_to_megabio(tensor: torch.Tensor, heads: int, version: float) -> torch.Tensor:
    """This rank's fused QKV rows (`heads` local heads) in megabio's [heads, 3, head_dim] order."""
    rest = tensor.shape[1:]
    if version >= 2.0:
        return tensor
    if version == 0:
        grouped = tensor.reshape(3, heads, -1, *rest).transpose(0, 1)  # [3, np, hn] -> [np, 3, hn]
    else:
        grouped = tensor.reshape(heads, -1, 3, *rest).transpose(1, 2)  # [np, hn, 3] -> [np, 3, hn]
    return grouped.reshape(-1, *rest).contiguous()


_LAYER_NAMES = {"input_layernorm": "attention_layernorm", "post_attention_layernorm": "mlp_layernorm",
                "self_attention.query_key_value": "self_attention.query_key_value",
                "self_attention.dense": "self_attention.dense", "mlp.dense_h_to_4h": "mlp.dense_h_to_4h",
                "mlp.dense_4h_to_h": "mlp.dense_4h_to_h"}


def _megabio_name(name: str) -> str | None:
    name = name.replace("language_model.transformer.", "language_model.encoder.").replace(".attention.",
                                                                                          ".self_attention.")
    fixed = {"language_model.embedding.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
             "language_model.embedding.position_embeddings.weight": "bert.embeddings.position_embeddings.weight",
             "language_model.embedding.tokentype_embeddings.weight": "bert.embeddings.tokentype_embeddings.weight",
             "language_model.encoder.final_layernorm.weight": "bert.encoder.final_layernorm.weight",
             "language_model.encoder.final_layernorm.bias": "bert.encoder.final_layernorm.bias",
             "language_model.pooler.dense.weight": "binary_head.pooler.weight",
             "language_model.pooler.dense.bias": "binary_head.pooler.bias",
             "lm_head.bias": "lm_head.bias", "lm_head.dense.weight": "lm_head.dense.weight",
             "lm_head.dense.bias": "lm_head.dense.bias", "lm_head.layernorm.weight": "lm_head.layernorm.weight",
             "lm_head.layernorm.bias": "lm_head.layernorm.bias", "binary_head.weight": "binary_head.classifier.weight",
             "binary_head.bias": "binary_head.classifier.bias"}
    if name in fixed:
        return fixed[name]
    prefix = "language_model.encoder.layers."
    if name.startswith(prefix):
        index, rest = name[len(prefix):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module in _LAYER_NAMES:
            return f"bert.encoder.layers.{index}.{_LAYER_NAMES[module]}.{param}"
    return None


def config_from_args(args: Any, vocab_size: int) -> tuple[ModelConfig, list[str]]:
    """megabio config from Megatron's saved args; notes for the report."""
    get = (lambda key, default=None: getattr(args, key, default)) if not isinstance(args, dict) else args.get
    hidden = get("hidden_size")
    if hidden is None or get("num_layers") is None or get("num_attention_heads") is None:
        raise ConversionError("the checkpoint's args lack num_layers / hidden_size / num_attention_heads")
    notes = []
    tanh = bool(get("openai_gelu", False) or get("bias_gelu_fusion", False))
    if tanh:
        notes.append("GeLU: tanh approximation, as Megatron's fused bias-GeLU computed it in training")
    config = ModelConfig(
        num_layers=get("num_layers"), hidden_size=hidden, num_attention_heads=get("num_attention_heads"),
        ffn_hidden_size=get("ffn_hidden_size") or 4 * hidden, max_position_embeddings=get("max_position_embeddings"),
        vocab_size=vocab_size, layernorm_epsilon=get("layernorm_epsilon", 1e-5) or 1e-5, layernorm_order="pre",
        gelu_approximate="tanh" if tanh else "none",
        binary_head="sop" if get("bert_binary_head", True) else "none")
    return config, notes


def read_megatron_lm(directory: str | Path, vocab_size: int, trust_checkpoint: bool = False
                     ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, list[str]]]:
    """(full megabio state dict, config, report) of a Megatron-LM BERT checkpoint directory."""
    directory = Path(directory)
    iteration = read_latest(directory)
    root = directory if iteration is None else directory / iteration_dir(iteration)  # or the iteration directory
    files = sorted(root.glob(f"mp_rank_*/{RANK_FILE}"))
    if not files:
        raise ConversionError(f"{root}: no mp_rank_*/model_optim_rng.pt (is this a Megatron-LM checkpoint?)")
    loaded = [load_megatron_file(f, trust_checkpoint) for f in files]
    if "args" not in loaded[0] or "model" not in loaded[0]:
        raise ConversionError(f"{files[0]}: no 'args' or 'model' entry; not a Megatron-LM checkpoint")
    config, notes = config_from_args(loaded[0]["args"], vocab_size)
    version = float(loaded[0].get("checkpoint_version", 0) or 0)
    heads_per_rank = config.num_attention_heads // len(files)
    report: dict[str, list[str]] = {"mapped": [], "initialised": [], "ignored": [], "notes": notes}
    shards = []
    for item in loaded:
        shard = {}
        for name, tensor in _flatten(item["model"]).items():
            ours = _megabio_name(name)
            if ours is None:
                report["ignored"].append(name)
                continue
            if ours.endswith("query_key_value.weight") or ours.endswith("query_key_value.bias"):
                tensor = _qkv_to_megabio(tensor, heads_per_rank, version)
            shard[ours] = tensor.float()
        shards.append(shard)
    padded_rows = shards[0]["bert.embeddings.word_embeddings.weight"].shape[0] * len(shards)
    if padded_rows < vocab_size:
        raise ConversionError(f"the vocabulary has {vocab_size} tokens but the checkpoint's embedding only "
                              f"{padded_rows} rows: wrong vocab.txt?")
    full = merge_shards(shards, config)
    with torch.device("meta"):
        expected = [n for n, _ in BertForPretraining(config).named_parameters()]
    missing = [n for n in expected if n not in full]
    if missing:
        raise ConversionError(f"{files[0]}: no weights for {missing[0]} (and {len(missing) - 1} more)")
    report["mapped"] = sorted(full)
    report["notes"].append(f"checkpoint_version {version}, {len(files)} TP file(s); vocabulary rows: {padded_rows} "
                           f"in the checkpoint, {vocab_size} kept")
    return full, config, report
