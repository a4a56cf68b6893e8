"""The compiled bias-GeLU kernel against the reference."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import bias_gelu
from megabio.kernels.bias_gelu import _BiasGelu, bias_gelu_reference
from tests.kernels.parity import assert_parity

pytestmark = pytest.mark.usefixtures("compiled")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(3, 5, 7), (64, 1024), (1, 1), (2, 130)])
def test_parity(dtype, approximate, shape):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3).to(dtype)
    bias = torch.randn(shape[-1], generator=generator).to(dtype)
    assert_parity(bias_gelu, bias_gelu_reference, [x, bias, approximate], dtype, [0, 1], _BiasGelu)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradcheck_float64(approximate):
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: bias_gelu(a, b, approximate), (x, bias))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(RuntimeError, match=r"bias must be \[4\]"):
        torch.ops.megabio.bias_gelu_forward(torch.randn(2, 4), torch.randn(3), False)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.megabio.bias_gelu_forward(torch.randn(2, 4), torch.randn(4).double(), False)
    with pytest.raises(ValueError, match="approximate='fast'"):
        bias_gelu(torch.randn(2, 4), torch.randn(4), "fast")
