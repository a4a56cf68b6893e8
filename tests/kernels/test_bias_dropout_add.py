"""The compiled bias-dropout-add kernel: inference parity, mask reuse, keep rate, determinism."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import bias_dropout_add, dropout
from megabio.kernels.bias_dropout_add import _BiasDropoutAdd, bias_dropout_add_reference
from tests.kernels.parity import assert_parity

pytestmark = pytest.mark.usefixtures("compiled")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_inference_parity(dtype, with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=generator).to(dtype)
    residual = torch.randn(3, 5, 7, generator=generator).to(dtype)
    bias = torch.randn(7, generator=generator).to(dtype) if with_bias else None
    grads = [0, 2, 1] if with_bias else [0, 2]
    assert_parity(bias_dropout_add, bias_dropout_add_reference, [x, bias, residual, 0.3, False], dtype, grads,
                  _BiasDropoutAdd)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_outputs_are_float_results_rounded_to_nearest_even(dtype):
    # The kernel computes r + (x + b) in float and narrows once (with AVX-512 BF16, by its own instruction):
    # every output must equal torch's round-to-nearest-even of the same float sums, ties and tails included.
    generator = torch.Generator().manual_seed(3)
    x, residual = (torch.randn(2, 77, 133, generator=generator).to(dtype) for _ in range(2))
    bias = torch.randn(133, generator=generator).to(dtype)
    expected = (residual.float() + (x.float() + bias.float())).to(dtype)
    out = torch.ops.megabio.bias_dropout_add_forward(x, bias, residual, 0.0)[0]
    assert torch.equal(out, expected)
    assert not torch.equal(out, (residual + (x + bias)))  # the test can tell one rounding from two


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_output_and_gradients_follow_the_mask(dtype):
    # x + bias > 0 everywhere, so a kept element is never read back as dropped.
    x = (torch.rand(64, 33) + 0.5).to(dtype).requires_grad_()
    bias = (torch.rand(33) + 0.5).to(dtype).requires_grad_()
    residual = torch.zeros(64, 33).to(dtype).requires_grad_()  # so the branch is readable from the output
    p = 0.25
    out = bias_dropout_add(x, bias, residual, p, training=True)
    branch = (out - residual).float()
    kept = branch != 0
    expected = ((x + bias).float() / (1 - p))
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(branch[kept], expected[kept], **tol)
    out.backward(torch.ones_like(out))
    # Gradients use the forward's mask: dx = mask / (1 - p), dbias = column sums, dresidual = 1.
    torch.testing.assert_close(x.grad.float(), kept.float() / (1 - p), **tol)
    torch.testing.assert_close(bias.grad.float(), (kept.float() / (1 - p)).sum(0), rtol=1e-2, atol=1e-1)
    torch.testing.assert_close(residual.grad.float(), torch.ones(64, 33))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [1088, 1000, 7])
def test_fused_bias_gradient_over_rows_that_straddle_mask_chunks(dtype, width):
    # 4096-element mask chunks end mid-row for these widths; the bias gradient is summed in the same pass.
    rows = 3 * 4096 // width + 2
    x = (torch.rand(rows, width) + 0.5).to(dtype).requires_grad_()
    bias = torch.zeros(width).to(dtype).requires_grad_()
    grad = torch.randn(rows, width).to(dtype)
    p = 0.2
    out = bias_dropout_add(x, bias, torch.zeros(rows, width, dtype=dtype), p, training=True)
    out.backward(grad)
    grad_x = torch.where(out != 0, grad.float() / (1 - p), 0.0)
    tol = dict(rtol=2e-2, atol=5e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(x.grad.float(), grad_x, **tol)
    torch.testing.assert_close(bias.grad.float(), grad_x.sum(0), **tol)


def test_same_generator_state_same_output():
    x, residual = torch.randn(1000, 7), torch.randn(1000, 7)
    torch.manual_seed(5)
    first = bias_dropout_add(x, None, residual, 0.5, training=True)
    torch.manual_seed(5)
    second = bias_dropout_add(x, None, residual, 0.5, training=True)
    third = bias_dropout_add(x, None, residual, 0.5, training=True)
    assert torch.equal(first, second)
    assert not torch.equal(second, third), "the generator must advance"


def test_independent_of_thread_count():
    x, residual = torch.randn(4096, 64), torch.randn(4096, 64)
    threads = torch.get_num_threads()
    outputs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        torch.manual_seed(3)
        outputs.append(bias_dropout_add(x, None, residual, 0.1, training=True))
    torch.set_num_threads(threads)
    assert torch.equal(*outputs)


def test_mask_depends_only_on_element_index():
    # Whole 128-element groups are drawn sixteen counters at a time (AVX-512), a group's tail one counter
    # at a time: a prefix of the input must see exactly the prefix of the full mask.
    x = torch.ones(2 * 4096 + 300)
    masks = {}
    for n in (x.numel(), 4096 + 257, 4095, 130, 5):
        torch.manual_seed(11)
        masks[n] = bias_dropout_add(x[:n], None, torch.zeros(n), 0.5, training=True) != 0
    full = masks.pop(x.numel())
    for n, mask in masks.items():
        assert torch.equal(mask, full[:n]), f"the mask of the first {n} elements differs"


def test_neighbouring_draws_are_uncorrelated():
    # Elements 1, 16 and 64 apart come from other lanes, words and halves of the same Philox blocks.
    torch.manual_seed(0)
    kept = (bias_dropout_add(torch.ones(1 << 20), None, torch.zeros(1 << 20), 0.5, training=True) != 0).float()
    for shift in (1, 16, 64, 128):
        correlation = torch.corrcoef(torch.stack([kept[:-shift], kept[shift:]]))[0, 1].item()
        assert abs(correlation) < 0.01, f"elements {shift} apart correlate: {correlation:.4f}"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_over_a_million_elements(p):
    x = torch.ones(1000, 1000)
    out = bias_dropout_add(x, None, torch.zeros_like(x), p, training=True)
    keep_rate = (out != 0).float().mean().item()
    assert abs(keep_rate - (1 - p)) < 0.01 * (1 - p), f"keep rate {keep_rate:.4f} for p={p}"


def test_gradcheck_float64_with_fixed_mask():
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    residual = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)

    def seeded(a, b, r):
        torch.manual_seed(0)  # the same mask on every evaluation
        return bias_dropout_add(a, b, r, 0.4, training=True)

    assert torch.autograd.gradcheck(seeded, (x, bias, residual))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(RuntimeError, match="p=1"):
        torch.ops.megabio.bias_dropout_add_forward(torch.randn(2, 3), None, torch.randn(2, 3), 1.0)
    with pytest.raises(RuntimeError, match="residual"):
        torch.ops.megabio.bias_dropout_add_forward(torch.randn(2, 3), None, torch.randn(3, 2), 0.1)
    with pytest.raises(RuntimeError, match="mask must be a bool tensor"):
        torch.ops.megabio.bias_dropout_add_backward(torch.randn(2, 3), torch.ones(2, 3), 0.1, True)
    with pytest.raises(ValueError, match=r"p=1\.5"):
        bias_dropout_add(torch.randn(2), None, torch.randn(2), 1.5, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_alone_scales_kept_elements_and_routes_gradients_through_the_mask(dtype):
    x = (torch.rand(8, 16, 33) + 0.5).to(dtype).requires_grad_()  # nonzero, so kept elements are readable
    p = 0.3
    out = dropout(x, p, training=True)
    kept = out != 0
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.bfloat16 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[kept].float(), x[kept].float() / (1 - p), **tol)
    assert 0.6 < kept.float().mean().item() < 0.8
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(x.grad.float(), torch.where(kept, grad.float() / (1 - p), 0.0), **tol)


def test_dropout_is_the_identity_outside_training_and_checks_p():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    with pytest.raises(ValueError, match=r"p=1\.5"):
        dropout(x, 1.5, training=True)


def test_dropout_follows_the_default_generator(monkeypatch):
    x = torch.randn(64, 64)
    torch.manual_seed(2)
    first = dropout(x, 0.5, training=True)
    torch.manual_seed(2)
    assert torch.equal(first, dropout(x, 0.5, training=True))
    monkeypatch.setenv("MEGABIO_KERNELS", "reference")  # the reference is F.dropout itself
    torch.manual_seed(2)
    reference = dropout(x, 0.5, training=True)
    torch.manual_seed(2)
    assert torch.equal(reference, torch.nn.functional.dropout(x, 0.5, training=True))
