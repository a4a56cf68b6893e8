"""The compiled LayerNorm kernel against the reference (F.layer_norm)."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import layer_norm
from megabio.kernels.layer_norm import _LayerNorm, layer_norm_reference
from tests.kernels.parity import assert_parity

pytestmark = pytest.mark.usefixtures("compiled")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("shape", [(3, 5, 7), (16, 1024), (1, 3), (4, 130)])
def test_parity(dtype, shape):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 2 + 1).to(dtype)
    weight = torch.rand(shape[-1], generator=generator).add(0.5).to(dtype)
    bias = torch.randn(shape[-1], generator=generator).to(dtype)
    assert_parity(layer_norm, layer_norm_reference, [x, weight, bias, 1e-5], dtype, [0, 1, 2], _LayerNorm)


def test_large_offset_keeps_precision():
    """Two-pass statistics: a large common offset must not destroy the variance (float32)."""
    x = torch.randn(8, 256, dtype=torch.float64) + 1e4
    weight, bias = torch.ones(256), torch.zeros(256)
    ours = layer_norm(x.float(), weight, bias, 1e-5).double()
    exact = layer_norm_reference(x, weight.double(), bias.double(), 1e-5)
    torch.testing.assert_close(ours, exact, rtol=1e-2, atol=1e-2)


def test_gradcheck_float64():
    x = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(10, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: layer_norm(a, w, b, 1e-5), (x, weight, bias))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(RuntimeError, match=r"weight must be \[4\]"):
        torch.ops.megabio.layer_norm_forward(torch.randn(2, 4), torch.ones(3), torch.zeros(3), 1e-5)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.megabio.layer_norm_forward(torch.randn(2, 4), torch.ones(4).double(), torch.zeros(4), 1e-5)
