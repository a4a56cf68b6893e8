"""Shared inputs and comparisons for model tests."""

from __future__ import annotations

import torch

from megabio.config import ModelConfig
from megabio.model import IGNORE_INDEX

# 1100 pads to 1152 at TP=1 but 1280 at TP=2 and 1536 at TP=4: the padding rows must not matter.
VOCAB_SIZE = 1100


def tiny_config(**overrides) -> ModelConfig:
    """The tiny preset with a small vocabulary and no dropout, so runs compare exactly."""
    settings = dict(vocab_size=VOCAB_SIZE, hidden_dropout=0.0, attention_dropout=0.0)
    return ModelConfig.from_preset("tiny", **{**settings, **overrides})


def make_batch(batch: int = 4, seq: int = 16, masked_per_sample: int = 3, seed: int = 0) -> dict:
    """Random inputs with right padding on some samples and the same number of MLM labels per sample
    (so per-micro-batch mean losses average to the combined batch's mean)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB_SIZE, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    for sample in range(1, batch, 2):
        attention_mask[sample, seq - 3 - sample:] = 0
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).clone()
    mlm_labels = torch.full((batch, seq), IGNORE_INDEX)
    for sample in range(batch):
        positions = torch.randperm(seq - 6, generator=generator)[:masked_per_sample] + 1
        mlm_labels[sample, positions] = torch.randint(0, VOCAB_SIZE, (masked_per_sample,), generator=generator)
    binary_labels = torch.randint(0, 2, (batch,), generator=generator)
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                mlm_labels=mlm_labels, binary_labels=binary_labels)


def slice_batch(batch: dict, start: int, stop: int) -> dict:
    return {name: tensor[start:stop] for name, tensor in batch.items()}


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """|actual - expected| <= rtol * max(|expected|, tiny) elementwise, relative to the tensor's scale."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().clamp(min=1e-30)
    error = (actual - expected).abs().max()
    assert error <= rtol * scale, f"{what}: max error {error:.3e} exceeds {rtol:.0e} x scale {scale:.3e}"
