"""residual + dropout(x + bias), the tail of every residual branch, and plain dropout (attention
probabilities) through the same kernel.

Dispatch: CUDA or C++ CPU kernel, else the reference. Both draw from torch's default generator of the
tensors' device (so megabio's RNG tracker controls them), though not the same numbers as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megabio.kernels import _extension

_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
                  "cuda": (torch.float32, torch.bfloat16, torch.float16)}


def bias_dropout_add_reference(
    x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Pure-PyTorch reference; dropout draws from the current default generator."""
    if bias is not None:
        x = x + bias
    return residual + F.dropout(x, p=p, training=training)


class _BiasDropoutAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, residual, p):
        out, mask = torch.ops.megabio.bias_dropout_add_forward(x, bias, residual, p)
        ctx.save_for_backward(mask)
        ctx.p, ctx.has_bias, ctx.has_residual = p, bias is not None, residual is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        if ctx.p > 0:  # the kernel sums the bias gradient in the same pass
            grad_x, grad_bias = torch.ops.megabio.bias_dropout_add_backward(grad.contiguous(), mask, ctx.p,
                                                                            ctx.has_bias)
        else:
            grad_x = grad
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return grad_x, grad_bias if ctx.has_bias else None, grad if ctx.has_residual else None, None


def _kernel_fits(x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor | None) -> bool:
    if _extension.compiled_ops() is None or not _extension.supports_device(x.device):
        return False
    if x.dtype not in _KERNEL_DTYPES.get(x.device.type, ()) or x.dim() < 1:
        return False
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype
                                 or residual.device != x.device):
        return False
    return bias is None or (bias.dtype == x.dtype and bias.device == x.device and bias.shape == x.shape[-1:])


def bias_dropout_add(
    x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """residual + dropout(x + bias), bias broadcast over the last dim; no dropout when not training."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p={p} must be in [0, 1)")
    # Under autocast the branch (bf16) meets an fp32 residual stream: compute in the residual's dtype,
    # as type promotion would.
    cast_x = _extension.match_dtype_under_autocast(x, residual)
    cast_bias = _extension.match_dtype_under_autocast(bias, residual)
    if _kernel_fits(cast_x, cast_bias, residual):
        return _BiasDropoutAdd.apply(cast_x, cast_bias, residual, float(p) if training else 0.0)
    return bias_dropout_add_reference(x, bias, residual, p, training)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout(x, p, training) through the compiled dropout kernel where it fits (its Philox mask is
    faster to draw than torch's CPU bernoulli_); drawn from the default generator like F.dropout."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p={p} must be in [0, 1)")
    if not training or p == 0.0:
        return x
    if _kernel_fits(x, None, None):
        return _BiasDropoutAdd.apply(x, None, None, float(p))
    return F.dropout(x, p, training)
