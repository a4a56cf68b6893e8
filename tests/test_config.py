"""ModelConfig presets, validation, and exact parameter counts against built models."""

from __future__ import annotations

import json

import pytest
import torch

from megabio.cli import main
from megabio.config import PRESETS, ConfigError, ModelConfig
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState, initialize
from megabio.sizing import count_parameters, estimate_training_memory


def _built_parameters(config: ModelConfig, tp: int = 1, rank: int = 0) -> int:
    with torch.device("meta"):
        model = BertForPretraining(config, ParallelState(tp_size=tp, tp_rank=rank))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_parameter_count_equals_built_model(preset):
    config = ModelConfig.from_preset(preset)
    assert count_parameters(config).total == _built_parameters(config)


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("order", ["pre", "post"])
def test_per_rank_count_equals_built_shard(tp, order):
    config = ModelConfig.from_preset("345m", layernorm_order=order, vocab_size=30522)
    per_rank = count_parameters(config, tp).per_rank
    assert all(_built_parameters(config, tp, rank) == per_rank for rank in (0, tp - 1))


def test_paper_sizes_with_bert_cased_vocab():
    assert 330e6 < count_parameters(ModelConfig.from_preset("345m")).total < 340e6
    assert 1.27e9 < count_parameters(ModelConfig.from_preset("1.2b")).total < 1.29e9


def test_binary_head_none_drops_pooler():
    config = ModelConfig.from_preset("tiny", binary_head="none")
    assert count_parameters(config).total == _built_parameters(config)
    h = config.hidden_size
    assert count_parameters(ModelConfig.from_preset("tiny")).total - count_parameters(config).total == h * h + 3 * h + 2


@pytest.mark.parametrize("vocab, tp, padded", [(30522, 1, 30592), (28996, 1, 29056), (30522, 2, 30720),
                                               (28996, 8, 29696), (128, 1, 128)])
def test_vocab_padding(vocab, tp, padded):
    assert ModelConfig(vocab_size=vocab).padded_vocab_size(tp) == padded


def test_overrides_and_round_trip():
    config = ModelConfig.from_preset("small", layernorm_order="post", layernorm_epsilon=1e-12)
    assert (config.num_layers, config.layernorm_order, config.layernorm_epsilon) == (6, "post", 1e-12)
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_size=100, num_attention_heads=3), "hidden_size=100 is not divisible by num_attention_heads=3"),
    (dict(layernorm_order="middle"), "layernorm_order='middle'"),
    (dict(gelu_approximate="fast"), "gelu_approximate='fast'"),
    (dict(binary_head="mlm"), "binary_head='mlm'"),
    (dict(hidden_dropout=1.0), "hidden_dropout=1.0"),
    (dict(num_layers=0), "num_layers=0"),
])
def test_bad_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="unknown preset 'base'"):
        ModelConfig.from_preset("base")
    with pytest.raises(ConfigError, match="hidden_sise"):
        ModelConfig.from_dict({"hidden_sise": 3})


def test_heads_not_divisible_by_tp_fails_before_building():
    with pytest.raises(ConfigError, match="num_attention_heads=4 is not divisible by tensor_model_parallel_size=3"):
        BertForPretraining(ModelConfig.from_preset("tiny"), ParallelState(tp_size=3))


def test_tp_without_process_group_is_refused():
    assert initialize(1) == ParallelState.single()
    with pytest.raises(ConfigError, match=r"needs torch\.distributed"):
        initialize(tensor_model_parallel_size=2)


def test_memory_estimate_shrinks_with_tp_recompute_and_sp():
    config = ModelConfig.from_preset("345m")
    base = estimate_training_memory(config, 1, micro_batch_size=4, precision="bf16")
    assert estimate_training_memory(config, 2, micro_batch_size=4, precision="bf16").total < base.total
    assert estimate_training_memory(config, 1, micro_batch_size=4, precision="bf16",
                                    recompute_activations=True).activations < base.activations
    tp2 = estimate_training_memory(config, 2, micro_batch_size=4)
    assert estimate_training_memory(config, 2, micro_batch_size=4, sequence_parallel=True).activations \
        < tp2.activations
    # Weights + grads + Adam are 18 bytes per parameter in mixed precision.
    assert base.parameters_and_optimizer == 18 * count_parameters(config).total
    # ZeRO-1 at DP=8 keeps 1/8 of Adam's 8 bytes per parameter.
    zero = estimate_training_memory(config, 1, micro_batch_size=4, precision="bf16", data_parallel_size=8,
                                    distributed_optimizer=True)
    assert zero.parameters_and_optimizer == (10 + 1) * count_parameters(config).total


def test_model_info_json(capsys):
    assert main(["model-info", "--preset", "345m", "--tensor-model-parallel-size", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    config = ModelConfig.from_preset("345m")
    assert report["parameters"] == count_parameters(config, 2).total
    assert report["parameters_per_rank"] == _built_parameters(config, 2)
    assert report["training_memory_per_rank_bytes"]["total"] > 0


def test_model_info_table_and_errors(capsys):
    assert main(["model-info", "--preset", "tiny", "--vocab-size", "1000"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert main(["model-info", "--preset", "tiny", "--tensor-model-parallel-size", "3"]) == 2
    assert "tensor_model_parallel_size=3" in capsys.readouterr().err
    assert main(["model-info", "--preset", "tiny", "--seq-length", "4096"]) == 2
    assert "--seq-length 4096" in capsys.readouterr().err
