"""The compiled bias-GeLU kernel against the reference."""

from __future__ import annotations

import importlib

import pytest
import torch

from megabio.kernels import bias_gelu
from megabio.kernels.bias_gelu import _BiasGelu, bias_gelu_reference
from tests.kernels.parity import assert_parity

pytestmark = pytest.mark.usefixtures("compiled")


@pytest.fixture(params=["saved", "recomputed"])
def derivative(request, monkeypatch):
    """Both backward strategies for every dtype: gelu' saved by the forward, or recomputed from x."""
    saves = request.param == "saved"
    monkeypatch.setattr(importlib.import_module("megabio.kernels.bias_gelu"), "_saves_derivative", lambda x: saves)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(3, 5, 7), (64, 1024), (1, 1), (2, 130)])
def test_parity(dtype, approximate, shape, derivative):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3).to(dtype)
    bias = torch.randn(shape[-1], generator=generator).to(dtype)
    assert_parity(bias_gelu, bias_gelu_reference, [x, bias, approximate], dtype, [0, 1], _BiasGelu)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradcheck_float64(approximate, derivative):
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: bias_gelu(a, b, approximate), (x, bias))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_half_precision_gradient_is_within_bfloat16_rounding_of_the_truth(approximate, derivative):
    # Saving gelu' rounds it to bfloat16 once before the product is rounded; recomputing it rounds only the
    # product. Either way x's gradient must stay within two bfloat16 roundings of the float64 truth for the same
    # bfloat16 inputs (relative to gelu', plus 1% of a rounding where gelu' crosses zero), and no further from
    # it than the eager bfloat16 composite.
    generator = torch.Generator().manual_seed(2)
    x = (torch.randn(64, 512, generator=generator) * 3).bfloat16()
    bias = torch.randn(512, generator=generator).bfloat16()
    upstream = torch.randn(64, 512, generator=generator).bfloat16()

    def gradients(function, dtype):
        inputs = [x.to(dtype).requires_grad_(), bias.to(dtype).requires_grad_()]
        function(*inputs, approximate).backward(upstream.to(dtype))
        return [t.grad.double() for t in inputs]

    x_true, bias_true = gradients(bias_gelu_reference, torch.float64)
    x_ours, bias_ours = gradients(bias_gelu, torch.bfloat16)
    x_eager = gradients(bias_gelu_reference, torch.bfloat16)[0]
    eps = 2.0 ** -8  # bfloat16's relative rounding bound
    scale = upstream.double().abs() * ((x_true / upstream.double()).abs() + 0.01) * eps

    def error(grad):
        return ((grad - x_true).abs() / scale).max().item()

    assert error(x_ours) <= 2.0
    assert error(x_ours) <= error(x_eager)
    # The bias gradient sums x's gradients in float: its error is bounded by their errors plus its own rounding.
    assert ((bias_ours - bias_true).abs() <= eps * (2 * x_true.abs().sum(0) + bias_true.abs())).all()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(RuntimeError, match=r"bias must be \[4\]"):
        torch.ops.megabio.bias_gelu_forward(torch.randn(2, 4), torch.randn(3), False)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.megabio.bias_gelu_forward(torch.randn(2, 4), torch.randn(4).double(), False)
    with pytest.raises(RuntimeError, match=r"grad .* and the saved tensor .* differ"):
        torch.ops.megabio.bias_gelu_backward_from_derivative(torch.randn(2, 4), torch.randn(2, 5))
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.megabio.bias_gelu_backward_from_derivative(torch.randn(2, 4), torch.randn(2, 4).double())
    with pytest.raises(ValueError, match="approximate='fast'"):
        bias_gelu(torch.randn(2, 4), torch.randn(4), "fast")
