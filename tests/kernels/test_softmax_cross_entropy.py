"""The compiled softmax cross-entropy kernels against their references (every dtype, vocabulary widths
around the vector size, targets outside the shard, rows without gradient), both paths against
F.cross_entropy in float64, and the kernels' argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megabio.kernels.softmax_cross_entropy import (
    softmax_cross_entropy_gradient,
    softmax_cross_entropy_gradient_reference,
    softmax_cross_entropy_statistics,
    softmax_cross_entropy_statistics_reference,
)
from tests.kernels.parity import TOLERANCE

# Relative rounding of exp(logit - lse) in each dtype's output; statistics are float32 for half inputs.
GRADIENT_TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-7), torch.float64: dict(rtol=1e-12, atol=1e-14),
                      torch.bfloat16: dict(rtol=1e-2, atol=1e-4), torch.float16: dict(rtol=2e-3, atol=1e-6)}


def _case(rows: int, vocab: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, vocab, dtype=torch.float64, generator=generator) * 4).to(dtype)
    target = torch.randint(0, vocab, (rows,), generator=generator)
    target[::3] = -1  # a row whose target is on another shard (or ignored)
    statistic = torch.float64 if dtype == torch.float64 else torch.float32
    grad_loss = torch.randn(rows, dtype=statistic, generator=generator)
    grad_loss[1::4] = 0.0  # ignored rows
    return logits, target, grad_loss


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("vocab", [1, 7, 16, 33, 1000])
def test_kernels_match_references(dtype: torch.dtype, vocab: int) -> None:
    logits, target, grad_loss = _case(9, vocab, dtype)
    ours = softmax_cross_entropy_statistics(logits, target)
    theirs = softmax_cross_entropy_statistics_reference(logits, target)
    for name, a, b in zip(("max", "sum_exp", "target_logit"), ours, theirs, strict=True):
        assert a.dtype == b.dtype == (torch.float64 if dtype == torch.float64 else torch.float32), name
        torch.testing.assert_close(a, b, **TOLERANCE[torch.float64 if dtype == torch.float64 else torch.float32],
                                   msg=lambda m, name=name: f"{name}: {m}")
    log_sum_exp = theirs[0] + theirs[1].log()
    grad = softmax_cross_entropy_gradient(logits, log_sum_exp, target, grad_loss)
    expected = softmax_cross_entropy_gradient_reference(logits, log_sum_exp, target, grad_loss)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad, expected, **GRADIENT_TOLERANCE[dtype])
    assert grad[1::4].eq(0).all()


@pytest.mark.usefixtures("compiled")
def test_kernel_propagates_nan_and_zero_fills_rows_without_gradient() -> None:
    logits, target, grad_loss = _case(4, 40, torch.float32)
    logits[0, 5] = float("nan")
    grad_loss[0], grad_loss[1] = 1.0, 0.0
    logits[1, 3] = float("nan")
    max, sum_exp, _ = softmax_cross_entropy_statistics(logits, target)
    assert max[0].isnan() or sum_exp[0].isnan()
    grad = softmax_cross_entropy_gradient(logits, max + sum_exp.log(), target, grad_loss)
    assert grad[0].isnan().all() and grad[1].eq(0).all()


@pytest.mark.parametrize("kernels", ["auto", "reference"])
@pytest.mark.parametrize("shard", [(0, 25), (25, 40)])
def test_pieces_give_cross_entropy_and_its_gradient(shard: tuple[int, int], kernels: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One shard's pieces, combined with the other shard's as the TP all-reduces do, against F.cross_entropy
    in float64 (loss and d loss / d logits), through the kernels and through the references."""
    monkeypatch.setenv("MEGABIO_KERNELS", kernels)
    logits, _, _ = _case(6, 40, torch.float64)
    target = torch.randint(0, 40, (6,), generator=torch.Generator().manual_seed(3))
    full = logits.clone().requires_grad_()
    F.cross_entropy(full, target, reduction="sum").backward()
    pieces = []
    for start, end in ((0, 25), (25, 40)):
        local = torch.where((target >= start) & (target < end), target - start, -1)
        pieces.append(softmax_cross_entropy_statistics(logits[:, start:end].contiguous(), local))
    global_max = torch.maximum(pieces[0][0], pieces[1][0])
    sum_exp = sum(s * (m - global_max).exp() for m, s, _ in pieces)
    log_sum_exp = global_max + sum_exp.log()
    loss = log_sum_exp - (pieces[0][2] + pieces[1][2])
    torch.testing.assert_close(loss, F.cross_entropy(logits, target, reduction="none"), rtol=1e-12, atol=1e-12)
    start, end = shard
    local = torch.where((target >= start) & (target < end), target - start, -1)
    grad = softmax_cross_entropy_gradient(logits[:, start:end].contiguous(), log_sum_exp, local,
                                          torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(grad, full.grad[:, start:end], rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("compiled")
def test_bad_arguments_raise_clear_errors() -> None:
    ops = torch.ops.megabio
    logits = torch.randn(3, 5)
    with pytest.raises(RuntimeError, match=r"logits must be \[rows, vocab\]"):
        ops.softmax_cross_entropy_statistics(torch.randn(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="target must be Long"):
        ops.softmax_cross_entropy_statistics(logits, torch.zeros(3, dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"target must be \[3\]"):
        ops.softmax_cross_entropy_statistics(logits, torch.zeros(4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="a column of logits"):
        ops.softmax_cross_entropy_statistics(logits, torch.tensor([0, 5, -1]))
    with pytest.raises(RuntimeError, match="log_sum_exp must be Float"):
        ops.softmax_cross_entropy_backward(logits, torch.zeros(3, dtype=torch.float64),
                                           torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_environment_forces_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.ops.megabio, "softmax_cross_entropy_statistics",
                        lambda *a: calls.append(a), raising=False)
    monkeypatch.setenv("MEGABIO_KERNELS", "reference")
    softmax_cross_entropy_statistics(torch.randn(2, 3), torch.tensor([0, -1]))
    assert not calls
