"""LayerNorm over the last dim, statistics in float32 for half-precision input.

Dispatch: CUDA kernel, apex's FusedLayerNorm (on GPU, when installed), C++ CPU kernel, else the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megabio.kernels import _extension

_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
                  "cuda": (torch.float32, torch.bfloat16, torch.float16)}


def layer_norm_reference(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Pure-PyTorch reference (F.layer_norm computes half-precision statistics in float32)."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        y, mean, rstd = torch.ops.megabio.layer_norm_forward(x, weight, bias, eps)
        ctx.save_for_backward(x, mean, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, mean, rstd, weight = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = torch.ops.megabio.layer_norm_backward(grad.contiguous(), x, mean, rstd, weight)
        return grad_x, grad_weight, grad_bias, None


def _kernel_fits(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    if weight is None or bias is None or _extension.compiled_ops() is None:
        return False
    if not _extension.supports_device(x.device) or x.dtype not in _KERNEL_DTYPES.get(x.device.type, ()):
        return False
    return (weight.dtype == bias.dtype == x.dtype and weight.device == bias.device == x.device
            and x.dim() >= 1 and weight.shape == bias.shape == x.shape[-1:])


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim."""
    if _kernel_fits(x, weight, bias):
        return _LayerNorm.apply(x, weight, bias, float(eps))
    apex = _extension.apex_layer_norm() if x.is_cuda and not _extension.forced_reference() else None
    if apex is not None and weight is not None and bias is not None:
        return apex.apply(x, weight, bias, x.shape[-1:], eps)
    return layer_norm_reference(x, weight, bias, eps)
