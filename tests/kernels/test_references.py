"""The pure-PyTorch kernel references against the formulas written out by hand in float64."""

from __future__ import annotations

import math

import pytest
import torch

from megabio.kernels import bias_dropout_add, bias_gelu, layer_norm, scaled_masked_softmax


def test_scaled_masked_softmax_matches_formula_and_zeros_fully_masked_rows():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    mask = torch.rand(2, 1, 4, 5, generator=generator) < 0.3
    mask[0, 0, 1] = True  # one row with every key masked
    probs = scaled_masked_softmax(x, mask, 0.5)
    weights = torch.exp(0.5 * x).masked_fill(mask, 0.0)
    expected = weights / weights.sum(-1, keepdim=True).clamp(min=1e-300)
    torch.testing.assert_close(probs, expected, rtol=1e-12, atol=1e-12)
    assert probs[0, :, 1].abs().max() == 0
    assert torch.isfinite(probs).all()


@pytest.mark.parametrize("mask_shape", [(2, 1, 1, 7), (2, 1, 3, 7)])
def test_scaled_masked_softmax_broadcast_masks_in_bf16(mask_shape):
    x = torch.randn(2, 4, 3, 7)
    mask = torch.rand(mask_shape) < 0.4
    mask[..., 0] = False
    probs = scaled_masked_softmax(x.bfloat16(), mask, 0.125)
    assert probs.dtype == torch.bfloat16
    expected = torch.softmax((0.125 * x).masked_fill(mask, float("-inf")), -1)
    torch.testing.assert_close(probs.float(), expected, rtol=1e-2, atol=1e-2)


def test_bias_gelu_exact_and_tanh():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64).view(1, 101)
    bias = torch.full((101,), 0.25, dtype=torch.float64)
    y = x + bias
    exact = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
    tanh = 0.5 * y * (1 + torch.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y**3)))
    torch.testing.assert_close(bias_gelu(x, bias), exact, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(bias_gelu(x, bias, "tanh"), tanh, rtol=1e-14, atol=1e-14)
    assert (bias_gelu(x, bias) - bias_gelu(x, bias, "tanh")).abs().max() > 1e-5
    with pytest.raises(ValueError, match="approximate='fast'"):
        bias_gelu(x, bias, "fast")


def test_layer_norm_formula():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    weight, bias = torch.rand(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * weight + bias
    torch.testing.assert_close(layer_norm(x, weight, bias, 1e-5), expected, rtol=1e-12, atol=1e-12)


def test_bias_dropout_add():
    x, residual = torch.randn(64, 32, dtype=torch.float64), torch.randn(64, 32, dtype=torch.float64)
    bias = torch.randn(32, dtype=torch.float64)
    torch.testing.assert_close(bias_dropout_add(x, bias, residual, 0.5, training=False), residual + x + bias)
    out = bias_dropout_add(x, bias, residual, 0.5, training=True)
    kept = (out - residual).abs() > 1e-12
    torch.testing.assert_close((out - residual)[kept], 2 * (x + bias)[kept])
    assert 0.4 < kept.double().mean() < 0.6
