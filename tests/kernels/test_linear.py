"""megabio.kernels.linear: with oneDNN's GEMM, the output and every gradient equal F.linear's in float64 to
float32 rounding; otherwise (ATen chosen, float64, autocast) it is F.linear itself; the setting is checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megabio.kernels import linear as linear_module
from megabio.kernels.linear import cpu_gemm, linear

needs_onednn = pytest.mark.skipif(not linear_module.onednn_available(), reason="torch built without oneDNN")


def _grads(x, weight, bias, dtype=None):
    x, weight = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    bias = None if bias is None else bias.detach().clone().requires_grad_()
    cast = (lambda t: t) if dtype is None else (lambda t: None if t is None else t.to(dtype))
    out = (F.linear if dtype else linear)(cast(x), cast(weight), cast(bias))
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out.backward(upstream.to(out.dtype))
    return out, [t.grad for t in (x, weight, bias) if t is not None]


@needs_onednn
@pytest.mark.parametrize("shape", [(7,), (3, 5, 7), (130, 7)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_onednn_matches_linear_in_float64(monkeypatch: pytest.MonkeyPatch, shape: tuple, with_bias: bool) -> None:
    monkeypatch.setenv("MEGABIO_CPU_GEMM", "onednn")
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(*shape, generator=generator), torch.randn(11, 7, generator=generator)
    bias = torch.randn(11, generator=generator) if with_bias else None
    out, grads = _grads(x, weight, bias)
    assert type(out.grad_fn).__name__ == "_OneDnnLinearBackward"
    expected, expected_grads = _grads(x, weight, bias, torch.float64)
    torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_takes_a_non_contiguous_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEGABIO_CPU_GEMM", "onednn")
    x, weight = torch.randn(5, 3, 8).transpose(0, 1), torch.randn(4, 8)
    torch.testing.assert_close(linear(x, weight), F.linear(x, weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting, dtype, autocast", [("aten", torch.float32, False),
                                                      ("onednn", torch.float64, False),
                                                      ("onednn", torch.float32, True)])
def test_other_cases_are_f_linear(monkeypatch: pytest.MonkeyPatch, setting: str, dtype: torch.dtype,
                                  autocast: bool) -> None:
    monkeypatch.setenv("MEGABIO_CPU_GEMM", setting)
    x, weight = torch.randn(4, 6, dtype=dtype, requires_grad=True), torch.randn(3, 6, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, expected = linear(x, weight), F.linear(x, weight)
    assert type(out.grad_fn) is type(expected.grad_fn) and out.dtype == expected.dtype
    torch.testing.assert_close(out, expected)


def test_reference_mode_and_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEGABIO_CPU_GEMM", "onednn")
    monkeypatch.setenv("MEGABIO_KERNELS", "reference")
    assert cpu_gemm() == "aten"
    monkeypatch.setenv("MEGABIO_CPU_GEMM", "blas")
    with pytest.raises(ValueError, match="MEGABIO_CPU_GEMM='blas'"):
        cpu_gemm()


@needs_onednn
def test_compiles_with_inductor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torch.compile inductor picks the GEMM (its lowering of oneDNN's op wants packed weights)."""
    monkeypatch.setenv("MEGABIO_CPU_GEMM", "onednn")
    x, weight, bias = torch.randn(4, 6, requires_grad=True), torch.randn(3, 6), torch.randn(3)
    compiled = torch.compile(linear, backend="inductor", fullgraph=True)
    out = compiled(x, weight, bias)
    torch.testing.assert_close(out, F.linear(x, weight, bias))
    out.sum().backward()
    torch.testing.assert_close(x.grad, weight.sum(0).expand(4, 6))


@pytest.mark.parametrize("amd", [True, False])
def test_auto_picks_onednn_on_amd_cpus_only(monkeypatch: pytest.MonkeyPatch, amd: bool) -> None:
    monkeypatch.delenv("MEGABIO_CPU_GEMM", raising=False)
    monkeypatch.setattr(linear_module, "_amd_cpu", lambda: amd)
    expected = "onednn" if amd and linear_module.onednn_available() else "aten"
    assert cpu_gemm() == expected
