"""row_sparse_grad_linear: the output and every gradient equal autograd's F.linear (float64 reference),
whichever rows of the incoming gradient are zero, and under bf16 autocast it casts as autocast does."""

import pytest
import torch
import torch.nn.functional as F

from megabio.model.row_sparse_grad_linear import row_sparse_grad_linear


def _grads(fn, x, weight, bias, grad_out):
    x, weight, bias = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    out = fn(x, weight, bias)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), x.grad, weight.grad, bias.grad


@pytest.mark.parametrize("zero_rows", ["some", "none", "all"])
def test_matches_linear_in_float64(zero_rows: str) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=generator)
    weight = torch.randn(11, 8, dtype=torch.float64, generator=generator)
    bias = torch.randn(11, dtype=torch.float64, generator=generator)
    grad_out = torch.randn(3, 5, 11, dtype=torch.float64, generator=generator)
    keep = {"some": torch.rand(3, 5, generator=generator) < 0.3, "none": torch.ones(3, 5, dtype=torch.bool),
            "all": torch.zeros(3, 5, dtype=torch.bool)}[zero_rows]
    grad_out = grad_out * keep.unsqueeze(-1)
    if zero_rows == "some":
        assert 0 < keep.sum() < keep.numel()
    ours = _grads(row_sparse_grad_linear, x, weight, bias, grad_out)
    reference = _grads(F.linear, x, weight, bias, grad_out)
    for name, a, b in zip(("output", "x", "weight", "bias"), ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"{name} differs")


def test_a_nan_gradient_row_is_not_skipped() -> None:
    x, weight, bias = torch.randn(4, 3), torch.randn(5, 3), torch.zeros(5)
    grad_out = torch.zeros(4, 5)
    grad_out[2, 1] = float("nan")
    _, grad_x, grad_weight, _ = _grads(row_sparse_grad_linear, x, weight, bias, grad_out)
    assert grad_x[2].isnan().all() and grad_x[[0, 1, 3]].eq(0).all()
    assert grad_weight[1].isnan().all()


def test_bf16_autocast_casts_like_linear() -> None:
    generator = torch.Generator().manual_seed(1)
    x, weight, bias = torch.randn(6, 16, generator=generator), torch.randn(32, 16, generator=generator), \
        torch.randn(32, generator=generator)
    grad_out = torch.randn(6, 32, generator=generator) * (torch.arange(6) % 2).unsqueeze(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _grads(row_sparse_grad_linear, x, weight, bias, grad_out)
        reference = _grads(F.linear, x, weight, bias, grad_out)
    assert ours[0].dtype == reference[0].dtype == torch.bfloat16
    for name, a, b in zip(("output", "x", "weight", "bias"), ours, reference, strict=True):
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2, msg=f"{name} differs")
