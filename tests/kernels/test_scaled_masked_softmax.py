"""The compiled softmax kernel against the reference: shapes, dtypes, masks, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import scaled_masked_softmax
from megabio.kernels.scaled_masked_softmax import _ScaledMaskedSoftmax, scaled_masked_softmax_reference
from tests.kernels.parity import assert_parity

pytestmark = pytest.mark.usefixtures("compiled")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("shape, mask_shape", [
    ((2, 3, 5, 7), (2, 1, 1, 7)),     # key padding, sk not a multiple of 4
    ((2, 3, 5, 130), (2, 1, 5, 130)),  # per-query mask, odd-ish sk
    ((1, 2, 3, 1), (1, 1, 1, 1)),
    ((3, 4, 17, 64), None),
])
def test_parity(dtype, shape, mask_shape):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3).to(dtype)
    mask = None if mask_shape is None else torch.rand(mask_shape, generator=generator) < 0.3
    if mask is not None:
        mask[0, 0, 0] = True  # a fully masked row (or rows)
    assert_parity(scaled_masked_softmax, scaled_masked_softmax_reference, [x, mask, 0.37], dtype, [0],
                  _ScaledMaskedSoftmax)


def test_fully_masked_rows_are_zero_with_zero_gradient():
    x = torch.randn(1, 2, 3, 9, requires_grad=True)
    mask = torch.zeros(1, 1, 3, 9, dtype=torch.bool)
    mask[0, 0, 1] = True
    probs = scaled_masked_softmax(x, mask, 1.0)
    assert probs[:, :, 1].abs().max() == 0
    probs.sum().backward()
    assert x.grad[:, :, 1].abs().max() == 0


def test_gradcheck_float64():
    x = torch.randn(2, 2, 3, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 3, 6) < 0.3
    assert torch.autograd.gradcheck(lambda t: scaled_masked_softmax(t, mask, 0.7), (x,))


def test_bad_arguments_raise_clear_errors():
    ops = torch.ops.megabio
    with pytest.raises(RuntimeError, match=r"x must be \[batch, heads, sq, sk\]"):
        ops.scaled_masked_softmax_forward(torch.randn(3, 4), None, 1.0)
    with pytest.raises(RuntimeError, match="mask must be bool"):
        ops.scaled_masked_softmax_forward(torch.randn(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 1.0)
    with pytest.raises(RuntimeError, match="floating-point"):
        ops.scaled_masked_softmax_forward(torch.ones(1, 1, 2, 2, dtype=torch.long), None, 1.0)
    with pytest.raises(RuntimeError, match="must have the same dtype"):
        ops.scaled_masked_softmax_backward(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2).double(), 1.0)


def test_unsupported_inputs_fall_back_to_the_reference():
    x = torch.randn(2, 3, 4)  # 3-D: not the kernel's layout
    torch.testing.assert_close(scaled_masked_softmax(x, None, 0.5), torch.softmax(0.5 * x, -1))
    x4 = torch.randn(1, 2, 3, 4)
    float_mask = torch.zeros(1, 1, 1, 4)  # not bool: reference semantics apply (masked_fill needs bool)
    with pytest.raises(RuntimeError):
        scaled_masked_softmax(x4, float_mask, 1.0)


def test_environment_forces_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.ops.megabio, "scaled_masked_softmax_forward",
                        lambda *a: calls.append(a) or torch.zeros(1), raising=False)
    monkeypatch.setenv("MEGABIO_KERNELS", "reference")
    scaled_masked_softmax(torch.randn(1, 1, 2, 3), None, 1.0)
    assert not calls
