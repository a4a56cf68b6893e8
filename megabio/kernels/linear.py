"""`F.linear` with oneDNN's float32 GEMM on CPUs where it beats ATen's BLAS.

torch runs float32 matmuls through its BLAS (MKL in the x86 wheels). On AMD CPUs MKL does not take its
fastest paths, and oneDNN's JIT GEMM (which torch already uses for bfloat16) is faster there
(`benchmarks/bench_model.py` prints both rates). So on those CPUs a float32 linear runs its forward and
input gradient through oneDNN; the weight gradient stays on ATen (oneDNN was no faster for it). The
results equal F.linear's to float32 rounding.

`MEGABIO_CPU_GEMM=onednn|aten|auto` (default auto: oneDNN on AMD x86 CPUs, ATen elsewhere);
`MEGABIO_KERNELS=reference` also means ATen.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from megabio.kernels import _extension

GEMM_CHOICES = ("auto", "onednn", "aten")


@functools.cache
def _amd_cpu() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in cpuinfo)
    except OSError:
        return False


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def cpu_gemm() -> str:
    """The float32 CPU GEMM this process uses: "onednn" or "aten"."""
    choice = os.environ.get("MEGABIO_CPU_GEMM", "auto").lower()
    if choice not in GEMM_CHOICES:
        raise ValueError(f"MEGABIO_CPU_GEMM={choice!r}: expected one of {', '.join(GEMM_CHOICES)}")
    if _extension.forced_reference() or choice == "aten" or not onednn_available():
        return "aten"
    return "onednn" if choice == "onednn" or _amd_cpu() else "aten"


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x `[n, in]` @ weight `[out, in]`.T + bias, by oneDNN (weight may be a transposed view)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        rows = _onednn_linear(x.reshape(-1, x.shape[-1]), weight, bias)
        return rows.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad_rows, weight.t(), None).view(x.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_rows.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_weight, grad_bias


def _fits_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    # Under CPU autocast F.linear computes in bfloat16 (already oneDNN's): keep its casts. Under
    # torch.compile inductor chooses the GEMM itself (its lowering of this op wants pre-packed weights).
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() >= 1
            and (bias is None or bias.dtype == torch.float32) and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling() and cpu_gemm() == "onednn")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`; float32 on the CPU through oneDNN where that is this machine's GEMM."""
    if _fits_onednn(x, weight, bias):
        return _OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)
