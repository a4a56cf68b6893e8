"""Megatron-LM BERT checkpoints, synthesised in every QKV layout and TP size with the globals Megatron's
pickles hold, convert to the same model without Megatron installed; a pickle that would run code is refused."""

from __future__ import annotations

import argparse
import enum
import os
import sys
import types

import numpy as np
import pytest
import torch

from megabio.checkpoint import read_checkpoint, shard_for_rank
from megabio.config import ModelConfig
from megabio.convert import ConversionError, convert
from megabio.model import BertForPretraining
from tests.convert.test_hf import SPECIALS

CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=256,
                     max_position_embeddings=64, vocab_size=1000, gelu_approximate="tanh")


def fake_megatron_enum():
    """A class pickled as megatron.core.enums.ModelType, as Megatron's args hold; removed after saving."""
    module = types.ModuleType("megatron.core.enums")

    class ModelType(enum.Enum):
        encoder_or_decoder = 1

    ModelType.__module__, ModelType.__qualname__ = "megatron.core.enums", "ModelType"
    module.ModelType = ModelType
    return module, ModelType


def megatron_layout_qkv(tensor: torch.Tensor, heads: int, version: float) -> torch.Tensor:
    rest = tensor.shape[1:]
    grouped = tensor.reshape(heads, 3, -1, *rest)  # megabio: [np, 3, hn]
    if version == 0:
        grouped = grouped.transpose(0, 1)  # [3, np, hn]
    elif version == 1.0:
        grouped = grouped.transpose(1, 2)  # [np, hn, 3]
    return grouped.reshape(-1, *rest).contiguous()


def write_megatron_checkpoint(directory, full, version: float, tp: int) -> None:
    legacy = version < 2.0
    encoder, attention = ("transformer", "attention") if legacy else ("encoder", "self_attention")
    module, model_type = fake_megatron_enum()
    sys.modules.update({"megatron": types.ModuleType("megatron"), "megatron.core": types.ModuleType("megatron.core"),
                        "megatron.core.enums": module})
    try:
        for rank, shard in enumerate([shard_for_rank(full, CONFIG, tp, r) for r in range(tp)]):
            layers = {}
            for i in range(CONFIG.num_layers):
                ours = f"bert.encoder.layers.{i}"
                for theirs, mine in (("input_layernorm", "attention_layernorm"),
                                     ("post_attention_layernorm", "mlp_layernorm"),
                                     (f"{attention}.dense", "self_attention.dense"),
                                     ("mlp.dense_h_to_4h", "mlp.dense_h_to_4h"),
                                     ("mlp.dense_4h_to_h", "mlp.dense_4h_to_h")):
                    for p in ("weight", "bias"):
                        layers[f"layers.{i}.{theirs}.{p}"] = shard[f"{ours}.{mine}.{p}"]
                for p in ("weight", "bias"):
                    layers[f"layers.{i}.{attention}.query_key_value.{p}"] = megatron_layout_qkv(
                        shard[f"{ours}.self_attention.query_key_value.{p}"], CONFIG.num_attention_heads // tp, version)
            layers["final_layernorm.weight"] = shard["bert.encoder.final_layernorm.weight"]
            layers["final_layernorm.bias"] = shard["bert.encoder.final_layernorm.bias"]
            embedding = {name: {"weight": shard[f"bert.embeddings.{ours}.weight"]} for name, ours in (
                ("word_embeddings", "word_embeddings"), ("position_embeddings", "position_embeddings"),
                ("tokentype_embeddings", "tokentype_embeddings"))}
            model = {
                "language_model": {
                    "embedding": embedding,
                    encoder: layers,
                    "pooler": {"dense.weight": shard["binary_head.pooler.weight"],
                               "dense.bias": shard["binary_head.pooler.bias"]}},
                "lm_head": {"bias": shard["lm_head.bias"], "dense": {"weight": shard["lm_head.dense.weight"],
                                                                     "bias": shard["lm_head.dense.bias"]},
                            "layernorm": {"weight": shard["lm_head.layernorm.weight"],
                                          "bias": shard["lm_head.layernorm.bias"]}},
                "binary_head": {"weight": shard["binary_head.classifier.weight"],
                                "bias": shard["binary_head.classifier.bias"]},
            }
            args = argparse.Namespace(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=256,
                                      max_position_embeddings=64, layernorm_epsilon=1e-5, bias_gelu_fusion=True,
                                      bert_binary_head=True, tensor_model_parallel_size=tp,
                                      model_type=model_type.encoder_or_decoder)
            rng = {"random_rng_state": (3, (1, 2), None), "np_rng_state": np.random.RandomState(0).get_state(),
                   "torch_rng_state": torch.get_rng_state()}
            path = directory / "iter_0000010" / f"mp_rank_{rank:02d}" / "model_optim_rng.pt"
            path.parent.mkdir(parents=True)
            torch.save({"args": args, "checkpoint_version": version, "iteration": 10, "model": model,
                        "rng_state": [rng]}, path)
    finally:
        for name in ("megatron.core.enums", "megatron.core", "megatron"):
            sys.modules.pop(name)
    (directory / "latest_checkpointed_iteration.txt").write_text("10")
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in SPECIALS + [f"t{i}" for i in range(995)]))


@pytest.mark.parametrize("version", [0, 1.0, 3.0])
@pytest.mark.parametrize("tp", [1, 2])
def test_every_layout_converts_to_the_same_model(tmp_path, version, tp):
    torch.manual_seed(0)
    full = BertForPretraining(CONFIG).state_dict()
    write_megatron_checkpoint(tmp_path / "megatron", full, version, tp)
    report = convert("megatron-lm", "megabio", tmp_path / "megatron", tmp_path / "mb")
    assert any("tanh" in note for note in report["notes"])
    converted, config, _ = read_checkpoint(tmp_path / "mb")
    assert config == CONFIG
    for name, tensor in full.items():
        assert torch.equal(converted[name], tensor), name


def test_code_running_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "bad" / "release" / "mp_rank_00").mkdir(parents=True)
    torch.save({"args": argparse.Namespace(), "model": {}, "evil": Payload()},
               tmp_path / "bad" / "release" / "mp_rank_00" / "model_optim_rng.pt")
    (tmp_path / "bad" / "latest_checkpointed_iteration.txt").write_text("release")
    (tmp_path / "bad" / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(ConversionError, match=r"refused to load: the pickle calls \S*system"):
        convert("megatron-lm", "megabio", tmp_path / "bad", tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
