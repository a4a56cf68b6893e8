"""Typed configuration: the model shape and its presets.

Every field has a docstring; presets are plain data so `megabio model-info` and the tests can iterate them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

LayerNormOrder = Literal["pre", "post"]
GeluApproximate = Literal["none", "tanh"]
BinaryHead = Literal["sop", "nsp", "none"]
AttentionBackend = Literal["auto", "sdpa", "softmax"]

IGNORE_INDEX = -100
"""Label value that takes no part in a loss (as in transformers); shared by data and model."""

BERT_CASED_VOCAB_SIZE = 28996
"""Size of Google's BERT-cased WordPiece vocabulary; the presets' default."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the value and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a Megatron BERT encoder.

    The defaults follow Megatron-LM's BERT (pre-LN, epsilon 1e-5, exact GeLU, SOP binary head).
    """

    num_layers: int = 2
    """Number of transformer layers."""
    hidden_size: int = 64
    """Width of the residual stream."""
    num_attention_heads: int = 4
    """Attention heads per layer; split across tensor-parallel ranks."""
    ffn_hidden_size: int = 256
    """Inner width of the MLP; split across tensor-parallel ranks."""
    max_position_embeddings: int = 128
    """Longest sequence the learned position embeddings cover."""
    vocab_size: int = BERT_CASED_VOCAB_SIZE
    """Real (unpadded) vocabulary size; the embedding is padded, see `padded_vocab_size`."""
    type_vocab_size: int = 2
    """Number of token types (segments A and B)."""
    make_vocab_size_divisible_by: int = 128
    """The embedding has a multiple of this times the TP size rows (Megatron's padding)."""
    layernorm_order: LayerNormOrder = "pre"
    """`pre`: Megatron (LN before attention / MLP, final LN). `post`: original BERT (LN after each residual
    add, LN on the embeddings, no final LN)."""
    layernorm_epsilon: float = 1e-5
    """LayerNorm epsilon: 1e-5 in Megatron, 1e-12 in Hugging Face BERT."""
    gelu_approximate: GeluApproximate = "none"
    """`none` for exact (erf) GeLU, `tanh` for the tanh approximation."""
    binary_head: BinaryHead = "sop"
    """Sentence-pair head: `sop` (Megatron, swapped segments), `nsp` (BERT, random next sentence), `none`."""
    hidden_dropout: float = 0.1
    """Dropout on embeddings and on each residual branch."""
    attention_dropout: float = 0.1
    """Dropout on attention probabilities."""
    init_method_std: float = 0.02
    """Standard deviation of the normal weight init; output projections use std / sqrt(2 * num_layers)."""
    attention_backend: AttentionBackend = "auto"
    """`sdpa`: torch's scaled_dot_product_attention. `softmax`: explicit scores through
    `megabio.kernels.scaled_masked_softmax` and `megabio.kernels.dropout` (the fused-kernel path). `auto`:
    `softmax` on CPU while attention dropout is on (torch's CPU SDPA then falls back to its unfused math
    path), `sdpa` otherwise (its fused kernels on GPU and without dropout)."""
    recompute_activations: bool = False
    """Recompute each layer's activations in backward instead of storing them (saves memory)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size",
                     "max_position_embeddings", "vocab_size", "type_vocab_size",
                     "make_vocab_size_divisible_by"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; choose a head count that divides the hidden size")
        _check_choice("layernorm_order", self.layernorm_order, ("pre", "post"))
        _check_choice("gelu_approximate", self.gelu_approximate, ("none", "tanh"))
        _check_choice("binary_head", self.binary_head, ("sop", "nsp", "none"))
        _check_choice("attention_backend", self.attention_backend, ("auto", "sdpa", "softmax"))
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tensor_model_parallel_size: int = 1) -> int:
        """Rows of the word embedding: vocab_size rounded up to make_vocab_size_divisible_by x TP."""
        multiple = self.make_vocab_size_divisible_by * tensor_model_parallel_size
        return -(-self.vocab_size // multiple) * multiple

    def check_tensor_parallel(self, tensor_model_parallel_size: int) -> None:
        """Raise ConfigError if this shape cannot be split over `tensor_model_parallel_size` ranks."""
        tp = tensor_model_parallel_size
        if tp < 1:
            raise ConfigError(f"tensor_model_parallel_size={tp} must be at least 1")
        if self.num_attention_heads % tp:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"tensor_model_parallel_size={tp}; use a TP size that divides the head count")
        if self.ffn_hidden_size % tp:
            raise ConfigError(
                f"ffn_hidden_size={self.ffn_hidden_size} is not divisible by tensor_model_parallel_size={tp}")

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, safe to store in a `weights_only` checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """The named preset (see PRESETS) with optional field overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")


PRESETS: dict[str, dict[str, Any]] = {
    # BioMegatron / Megatron-LM 345M BERT.
    "345m": dict(num_layers=24, hidden_size=1024, num_attention_heads=16, ffn_hidden_size=4096,
                 max_position_embeddings=512),
    # The paper does not give the 800M shape; 40 x 1280 lands at ~828M with the BERT-cased vocab.
    "800m": dict(num_layers=40, hidden_size=1280, num_attention_heads=16, ffn_hidden_size=5120,
                 max_position_embeddings=512),
    # Megatron's 1.3B BERT shape.
    "1.2b": dict(num_layers=24, hidden_size=2048, num_attention_heads=32, ffn_hidden_size=8192,
                 max_position_embeddings=512),
    # CPU benchmarks.
    "small": dict(num_layers=6, hidden_size=512, num_attention_heads=8, ffn_hidden_size=2048,
                  max_position_embeddings=512),
    # Tests and the demo.
    "tiny": dict(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=256,
                 max_position_embeddings=128),
}

__all__ = ["BERT_CASED_VOCAB_SIZE", "PRESETS", "ConfigError", "ModelConfig"]
