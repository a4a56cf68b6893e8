"""Hugging Face BERT (post-LN) and MegatronBert (pre-LN) state dicts <-> megabio's, in full (unsharded).

The encoder layers of the two formats differ only in where their LayerNorms sit, so one name table serves
both. Q, K and V are separate matrices in Hugging Face and one fused matrix in megabio, with rows laid out
per head as `[heads, 3, head_dim]` (Megatron's layout): the converters interleave and split them.
"""

from __future__ import annotations

from typing import Any

import torch

from megabio.checkpoint.layout import CheckpointError
from megabio.config import ModelConfig

BERT, MEGATRON_BERT = "hf-bert", "hf-megatron-bert"
_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


class ConversionError(CheckpointError):
    """A checkpoint that cannot be converted; the message names the key, shape or field."""


def config_from_hf(hf: dict[str, Any], fmt: str) -> ModelConfig:
    """megabio's ModelConfig for a Hugging Face config.json."""
    act = hf.get("hidden_act", "gelu")
    if act not in _GELU:
        raise ConversionError(f"config.json: hidden_act={act!r} is not a GeLU megabio supports ({', '.join(_GELU)})")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"config.json: position_embedding_type={hf['position_embedding_type']!r} "
                              f"is not supported (absolute only)")
    try:
        return ModelConfig(
            num_layers=hf["num_hidden_layers"], hidden_size=hf["hidden_size"],
            num_attention_heads=hf["num_attention_heads"], ffn_hidden_size=hf["intermediate_size"],
            max_position_embeddings=hf["max_position_embeddings"], vocab_size=hf["vocab_size"],
            type_vocab_size=hf.get("type_vocab_size", 2), layernorm_epsilon=hf.get("layer_norm_eps", 1e-12),
            layernorm_order="pre" if fmt == MEGATRON_BERT else "post", gelu_approximate=_GELU[act],
            binary_head="nsp", hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            init_method_std=hf.get("initializer_range", 0.02))
    except KeyError as error:
        raise ConversionError(f"config.json: missing field {error}") from None


def config_to_hf(config: ModelConfig, fmt: str) -> dict[str, Any]:
    return {
        "architectures": ["MegatronBertForPreTraining" if fmt == MEGATRON_BERT else "BertForPreTraining"],
        "model_type": "megatron-bert" if fmt == MEGATRON_BERT else "bert",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.ffn_hidden_size, "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layernorm_epsilon,
        "hidden_act": "gelu" if config.gelu_approximate == "none" else "gelu_pytorch_tanh",
        "hidden_dropout_prob": config.hidden_dropout, "attention_probs_dropout_prob": config.attention_dropout,
        "initializer_range": config.init_method_std, "position_embedding_type": "absolute", "pad_token_id": 0,
        "tie_word_embeddings": True,
    }


def name_table(config: ModelConfig, fmt: str) -> list[tuple[str, str]]:
    """(Hugging Face name without the `bert.` prefix, megabio name) for every parameter but Q/K/V."""
    pairs = [("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
             ("embeddings.position_embeddings.weight", "bert.embeddings.position_embeddings.weight"),
             ("embeddings.token_type_embeddings.weight", "bert.embeddings.tokentype_embeddings.weight")]
    norms = []
    if fmt == BERT:
        norms.append(("embeddings.LayerNorm", "bert.embeddings.layernorm"))
    else:
        norms.append(("encoder.ln", "bert.encoder.final_layernorm"))
    for i in range(config.num_layers):
        hf, ours = f"encoder.layer.{i}", f"bert.encoder.layers.{i}"
        attention_norm, mlp_norm = (("attention.output.LayerNorm", "output.LayerNorm") if fmt == BERT
                                    else ("attention.ln", "ln"))
        norms += [(f"{hf}.{attention_norm}", f"{ours}.attention_layernorm"),
                  (f"{hf}.{mlp_norm}", f"{ours}.mlp_layernorm")]
        for hf_module, our_module in (("attention.output.dense", "self_attention.dense"),
                                      ("intermediate.dense", "mlp.dense_h_to_4h"),
                                      ("output.dense", "mlp.dense_4h_to_h")):
            pairs += [(f"{hf}.{hf_module}.{p}", f"{ours}.{our_module}.{p}") for p in ("weight", "bias")]
    norms += [("cls.predictions.transform.LayerNorm", "lm_head.layernorm")]
    pairs += [(f"{a}.{p}", f"{b}.{p}") for a, b in norms for p in ("weight", "bias")]
    pairs += [(f"cls.predictions.transform.dense.{p}", f"lm_head.dense.{p}") for p in ("weight", "bias")]
    pairs += [("cls.predictions.bias", "lm_head.bias")]
    pairs += [(f"pooler.dense.{p}", f"binary_head.pooler.{p}") for p in ("weight", "bias")]
    pairs += [(f"cls.seq_relationship.{p}", f"binary_head.classifier.{p}") for p in ("weight", "bias")]
    return pairs


def _fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """[h(, in)] x 3 -> [heads * 3 * head_dim(, in)], rows grouped per head as (q, k, v)."""
    return torch.stack([t.reshape(heads, -1, *t.shape[1:]) for t in (q, k, v)], dim=1).reshape(-1, *q.shape[1:])


def _split_qkv(fused: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grouped = fused.reshape(heads, 3, -1, *fused.shape[1:])  # [heads, 3, head_dim(, in)]
    return tuple(grouped[:, i].reshape(-1, *fused.shape[1:]).contiguous() for i in range(3))


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in state.items()}


def import_hf(state: dict[str, torch.Tensor], config: ModelConfig, fmt: str,
              reference: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """megabio state dict (TP=1) from a Hugging Face one.

    `reference` is a freshly initialised megabio state dict: parameters the checkpoint lacks (an MLM or
    NSP head a BertModel does not have) keep its values and are listed in the report as initialised.
    """
    hf = _strip_prefix(state)
    out = {k: v.clone() for k, v in reference.items()}
    report: dict[str, list[str]] = {"mapped": [], "initialised": [], "ignored": []}
    used: set[str] = set()

    def place(ours: str, tensor: torch.Tensor, source: str) -> None:
        target = out[ours]
        if ours in ("bert.embeddings.word_embeddings.weight", "lm_head.bias"):
            if tensor.shape[0] != config.vocab_size:
                raise ConversionError(f"{source}: {tuple(tensor.shape)} has {tensor.shape[0]} vocabulary rows, "
                                      f"config.json says vocab_size={config.vocab_size}")
            target = target[: config.vocab_size]
        if tensor.shape != target.shape:
            raise ConversionError(f"{source}: shape {tuple(tensor.shape)} does not match {ours} {tuple(target.shape)}")
        target.copy_(tensor)
        report["mapped"].append(ours)

    for hf_name, ours in name_table(config, fmt):
        if hf_name in hf:
            place(ours, hf[hf_name], hf_name)
            used.add(hf_name)
        elif hf_name == "cls.predictions.bias" and "cls.predictions.decoder.bias" in hf:
            place(ours, hf["cls.predictions.decoder.bias"], "cls.predictions.decoder.bias")
            used.add("cls.predictions.decoder.bias")
        else:
            report["initialised"].append(ours)
    for i in range(config.num_layers):
        prefix = f"encoder.layer.{i}.attention.self"
        for p in ("weight", "bias"):
            names = [f"{prefix}.{m}.{p}" for m in ("query", "key", "value")]
            missing = [n for n in names if n not in hf]
            if missing:
                raise ConversionError(f"the checkpoint lacks {missing[0]}: not a BERT encoder with "
                                      f"{config.num_layers} layers?")
            fused = _fuse_qkv(*(hf[n] for n in names), config.num_attention_heads)
            place(f"bert.encoder.layers.{i}.self_attention.query_key_value.{p}", fused, names[0])
            used.update(names)
    essential = [n for n in report["initialised"] if n.startswith("bert.")]
    if essential:
        raise ConversionError(f"the checkpoint lacks encoder weights, first: {essential[0]} "
                              f"(is it a {fmt} checkpoint?)")
    used |= {"cls.predictions.decoder.weight", "embeddings.position_ids"}  # tied to the embeddings; a buffer
    report["ignored"] = sorted(set(hf) - used)
    return out, report


def export_hf(state: dict[str, torch.Tensor], config: ModelConfig, fmt: str) -> dict[str, torch.Tensor]:
    """Hugging Face state dict (with the `bert.` prefix of *ForPreTraining) from a full megabio one."""
    out: dict[str, torch.Tensor] = {}
    for hf_name, ours in name_table(config, fmt):
        if ours not in state:
            continue  # e.g. no binary head
        tensor = state[ours]
        if ours in ("bert.embeddings.word_embeddings.weight", "lm_head.bias"):
            tensor = tensor[: config.vocab_size]
        out[hf_name if hf_name.startswith("cls.") else f"bert.{hf_name}"] = tensor.contiguous()
    for i in range(config.num_layers):
        for p in ("weight", "bias"):
            q, k, v = _split_qkv(state[f"bert.encoder.layers.{i}.self_attention.query_key_value.{p}"],
                                 config.num_attention_heads)
            for name, tensor in zip(("query", "key", "value"), (q, k, v), strict=True):
                out[f"bert.encoder.layer.{i}.attention.self.{name}.{p}"] = tensor
    return out


_TASK_ARCHITECTURES = {"token": "ForTokenClassification", "sequence": "ForSequenceClassification"}


def export_hf_task(state: dict[str, torch.Tensor], config: ModelConfig, fmt: str, task: dict[str, Any]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A fine-tuned task model as transformers' *ForTokenClassification / *ForSequenceClassification:
    (state dict, config.json fields to add). Only a one-layer head has a transformers equivalent."""
    kind = task["kind"]
    if kind not in _TASK_ARCHITECTURES:
        raise ConversionError(f"a {kind} model has no transformers export (token and sequence models do)")
    if task["head"]["num_fc_layers"] != 1 or task.get("options", {}).get("entity_markers"):
        raise ConversionError("only a one-layer head on [CLS] or tokens has a transformers equivalent; this model "
                              "was fine-tuned with --num-fc-layers 2 or entity markers")
    keep_pooler = kind == "sequence"
    out = {name: tensor for name, tensor in export_hf(state, config, fmt).items()
           if name.startswith("bert.") and (keep_pooler or not name.startswith("bert.pooler."))}
    if keep_pooler:
        out.update({f"bert.pooler.dense.{p}": state[f"pooler.{p}"].contiguous() for p in ("weight", "bias")})
    out.update({f"classifier.{p}": state[f"head.classifier.{p}"].contiguous() for p in ("weight", "bias")})
    labels = task["labels"]
    prefix = "MegatronBert" if fmt == MEGATRON_BERT else "Bert"
    return out, {"architectures": [prefix + _TASK_ARCHITECTURES[kind]],
                 "id2label": {str(i): label for i, label in enumerate(labels)},
                 "label2id": {label: i for i, label in enumerate(labels)}}
