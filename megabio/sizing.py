"""Parameter counts and per-rank training-memory estimates, computed from the config alone.

The counts are exact (a test compares them with the built model on the meta device for every preset).
Activation memory follows Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", eqs. 2-5, for 16-bit activations (doubled for fp32), plus the fp32 MLM logits and their softmax.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from megabio.config import ModelConfig

Precision = Literal["fp32", "bf16", "fp16"]

# Bytes per parameter for weights + gradients + Adam state.
#   fp32: weight 4 + grad 4 + Adam m, v 8.
#   bf16 / fp16 (Megatron mixed precision): weight 2 + fp32 grad 4 + fp32 main weight 4 + Adam 8.
_STATE_BYTES = {"fp32": 16, "bf16": 18, "fp16": 18}
_ADAM_BYTES = 8  # the part a distributed optimizer (ZeRO-1) shards over data parallelism


@dataclass(frozen=True)
class ParameterCount:
    total: int
    """Parameters of the whole model (each replicated parameter counted once)."""
    per_rank: int
    """Parameters held by one tensor-parallel rank (replicated ones included)."""
    embedding: int
    """Word, position and token-type embeddings of one rank."""


def layer_matmul_parameters(config: ModelConfig) -> int:
    """Weights the transformer layers multiply each token by (QKV, projection, both MLP matrices): the
    count behind the usual 6 x N FLOPs per token of a training step."""
    h, f = config.hidden_size, config.ffn_hidden_size
    return config.num_layers * (4 * h * h + 2 * h * f)


def count_parameters(config: ModelConfig, tensor_model_parallel_size: int = 1) -> ParameterCount:
    """Exact parameter count of BertForPretraining(config) over `tensor_model_parallel_size` ranks."""
    tp = tensor_model_parallel_size
    config.check_tensor_parallel(tp)
    h, f = config.hidden_size, config.ffn_hidden_size
    vocab = config.padded_vocab_size(tp)
    layernorm = 2 * h

    def sizes(ranks: int) -> tuple[int, int]:
        """(sharded, replicated) parameter counts of one of `ranks` ranks."""
        embedding_sharded = vocab // ranks * h
        layer_sharded = (3 * h * h + 3 * h) // ranks + (h * h) // ranks + (f * h + f) // ranks + (h * f) // ranks
        layer_replicated = h + h + 2 * layernorm  # projection and FC2 biases, two LayerNorms
        sharded = embedding_sharded + config.num_layers * layer_sharded + vocab // ranks  # + MLM bias
        replicated = (config.max_position_embeddings + config.type_vocab_size) * h
        replicated += config.num_layers * layer_replicated + layernorm  # embedding LN (post) or final LN (pre)
        replicated += h * h + h + layernorm  # MLM head transform
        if config.binary_head != "none":
            replicated += h * h + h + 2 * h + 2  # pooler + classifier
        return sharded, replicated

    sharded, replicated = sizes(tp)
    embedding = vocab // tp * h + (config.max_position_embeddings + config.type_vocab_size) * h
    return ParameterCount(total=sum(sizes(1)), per_rank=sharded + replicated, embedding=embedding)


@dataclass(frozen=True)
class MemoryEstimate:
    parameters_and_optimizer: int
    """Bytes of weights, gradients and Adam state on one rank."""
    activations: int
    """Bytes of activations kept for backward on one rank, for one micro-batch."""

    @property
    def total(self) -> int:
        return self.parameters_and_optimizer + self.activations


def estimate_training_memory(
    config: ModelConfig, tensor_model_parallel_size: int = 1, *, micro_batch_size: int = 1,
    seq_length: int | None = None, precision: Precision = "bf16", recompute_activations: bool = False,
    sequence_parallel: bool = False, data_parallel_size: int = 1, distributed_optimizer: bool = False,
) -> MemoryEstimate:
    """Estimated training memory of one rank with Adam (no framework or allocator overhead); with
    `distributed_optimizer` the Adam state is split over `data_parallel_size` ranks."""
    if precision not in _STATE_BYTES:
        raise ValueError(f"precision={precision!r} must be one of {', '.join(_STATE_BYTES)}")
    tp = tensor_model_parallel_size
    s = seq_length or config.max_position_embeddings
    b, h, a = micro_batch_size, config.hidden_size, config.num_attention_heads
    act_scale = 2 if precision == "fp32" else 1  # the paper's counts are for 2-byte activations
    sp = sequence_parallel and tp > 1
    if recompute_activations:
        per_layer = 2 * s * b * h / (tp if sp else 1)  # only each layer's input is kept
    elif sp:
        per_layer = s * b * h / tp * (34 + 5 * a * s / h)
    else:
        per_layer = s * b * h * (10 + 24 / tp + 5 * a * s / (h * tp))
    logits = 2 * 4 * s * b * config.padded_vocab_size(tp) / tp  # fp32 logits and softmax
    activations = int(config.num_layers * per_layer * act_scale + logits)
    params = count_parameters(config, tp).per_rank
    adam_share = 1 / data_parallel_size if distributed_optimizer else 1
    state_bytes = _STATE_BYTES[precision] - _ADAM_BYTES * (1 - adam_share)
    return MemoryEstimate(parameters_and_optimizer=int(params * state_bytes), activations=activations)


def model_report(config: ModelConfig, tensor_model_parallel_size: int = 1, **memory_options) -> dict:
    """Plain-data summary for `megabio model-info`."""
    count = count_parameters(config, tensor_model_parallel_size)
    memory = estimate_training_memory(config, tensor_model_parallel_size, **memory_options)
    return {
        "config": config.to_dict(),
        "tensor_model_parallel_size": tensor_model_parallel_size,
        "padded_vocab_size": config.padded_vocab_size(tensor_model_parallel_size),
        "parameters": count.total,
        "parameters_per_rank": count.per_rank,
        "embedding_parameters_per_rank": count.embedding,
        "memory_options": memory_options,
        "training_memory_per_rank_bytes": {**asdict(memory), "total": memory.total},
    }
