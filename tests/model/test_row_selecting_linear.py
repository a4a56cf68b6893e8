"""linear_with_selected_rows: both outputs and every gradient equal autograd's F.linear followed by
boolean indexing (float64 reference), whether the loss reads the selected rows, the full output or both;
with only the selected rows in the loss the backward multiplies those rows alone; under bf16 autocast it
casts as autocast does."""

import pytest
import torch
import torch.nn.functional as F

from megabio.model.row_selecting_linear import linear_with_selected_rows


def _reference(x, weight, bias, rows):
    out = F.linear(x, weight, bias)
    return out, out[rows]


def _grads(fn, x, weight, bias, rows, grad_full, grad_selected):
    x, weight, bias = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    full, selected = fn(x, weight, bias, rows)
    loss = sum((out * grad.to(out.dtype)).sum() for out, grad in ((full, grad_full), (selected, grad_selected))
               if grad is not None)
    loss.backward()
    return full.detach(), selected.detach(), x.grad, weight.grad, bias.grad


def _inputs(selected: str, dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=dtype, generator=generator)
    weight = torch.randn(11, 8, dtype=dtype, generator=generator)
    bias = torch.randn(11, dtype=dtype, generator=generator)
    rows = {"some": torch.rand(3, 5, generator=generator) < 0.3, "all": torch.ones(3, 5, dtype=torch.bool),
            "none": torch.zeros(3, 5, dtype=torch.bool)}[selected]
    if selected == "some":
        assert 0 < rows.sum() < rows.numel()
    return x, weight, bias, rows, generator


@pytest.mark.parametrize("selected", ["some", "all", "none"])
@pytest.mark.parametrize("in_loss", ["selected", "full", "both"])
def test_matches_linear_then_indexing_in_float64(selected: str, in_loss: str) -> None:
    x, weight, bias, rows, generator = _inputs(selected)
    grad_full = torch.randn(3, 5, 11, dtype=torch.float64, generator=generator) if in_loss != "selected" else None
    grad_selected = (torch.randn(int(rows.sum()), 11, dtype=torch.float64, generator=generator)
                     if in_loss != "full" else None)
    ours = _grads(linear_with_selected_rows, x, weight, bias, rows, grad_full, grad_selected)
    reference = _grads(_reference, x, weight, bias, rows, grad_full, grad_selected)
    for name, a, b in zip(("output", "selected", "x", "weight", "bias"), ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"{name} differs")


def test_backward_multiplies_only_the_selected_rows() -> None:
    x, weight, bias, rows, _ = _inputs("some")
    x, weight = x.requires_grad_(), weight.requires_grad_()
    _, selected = linear_with_selected_rows(x, weight, bias, rows)
    with torch.profiler.profile(record_shapes=True) as profile:
        selected.sum().backward()
    matmul_rows = {tuple(event.input_shapes[0]) for event in profile.events() if event.name == "aten::mm"}
    n = int(rows.sum())
    assert matmul_rows == {(n, 11), (11, n)}, matmul_rows  # grad @ weight and grad.T @ inputs, n rows each


def test_rows_must_match_the_leading_dims() -> None:
    x, weight, bias, _, _ = _inputs("some")
    with pytest.raises(ValueError, match="do not match the leading dims"):
        linear_with_selected_rows(x, weight, bias, torch.ones(5, 3, dtype=torch.bool))


def test_bf16_autocast_casts_like_linear() -> None:
    x, weight, bias, rows, generator = _inputs("some", torch.float32)
    grad_selected = torch.randn(int(rows.sum()), 11, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _grads(linear_with_selected_rows, x, weight, bias, rows, None, grad_selected)
        reference = _grads(_reference, x, weight, bias, rows, None, grad_selected)
    assert ours[0].dtype == reference[0].dtype == torch.bfloat16
    for name, a, b in zip(("output", "selected", "x", "weight", "bias"), ours, reference, strict=True):
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2, msg=f"{name} differs")
