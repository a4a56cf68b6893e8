"""softmax(scale * x) over the last dim with masked positions excluded.

x: `[b, h, sq, sk]`; mask: bool, True = masked, broadcastable to x. A row whose keys are all masked gives
zeros (not NaN, not uniform), as Megatron's fused kernel does. Dispatch: CUDA kernel (sk <= 2048) or
C++ CPU kernel, else the reference.
"""

from __future__ import annotations

import torch

from megabio.kernels import _extension

CUDA_MAX_KEYS = 2048  # the warp-per-row CUDA kernel keeps a row in registers
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
                  "cuda": (torch.float32, torch.bfloat16, torch.float16)}


def scaled_masked_softmax_reference(x: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Pure-PyTorch reference; statistics in float32 for half-precision input."""
    scores = x.float() * scale if x.dtype in (torch.float16, torch.bfloat16) else x * scale
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:
        # Fully masked rows are all -inf and softmax makes them NaN; they get zeros instead.
        probs = probs.masked_fill(mask.all(dim=-1, keepdim=True), 0.0)
    return probs.to(x.dtype)


class _ScaledMaskedSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, scale):
        probs = torch.ops.megabio.scaled_masked_softmax_forward(x, mask, scale)
        ctx.save_for_backward(probs)
        ctx.scale = scale
        return probs

    @staticmethod
    def backward(ctx, grad):
        (probs,) = ctx.saved_tensors
        return torch.ops.megabio.scaled_masked_softmax_backward(grad.contiguous(), probs, ctx.scale), None, None


def _kernel_fits(x: torch.Tensor, mask: torch.Tensor | None) -> bool:
    if _extension.compiled_ops() is None or not _extension.supports_device(x.device):
        return False
    if x.dim() != 4 or x.dtype not in _KERNEL_DTYPES.get(x.device.type, ()):
        return False
    if x.device.type == "cuda" and x.shape[-1] > CUDA_MAX_KEYS:
        return False
    if mask is not None:
        if mask.dtype != torch.bool or mask.dim() != 4 or mask.device != x.device:
            return False
        if any(m not in (1, s) for m, s in zip(mask.shape, x.shape, strict=True)):
            return False
    return True


def scaled_masked_softmax(x: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """softmax(scale * x + mask) over the last dim; masked keys get probability 0."""
    if _kernel_fits(x, mask):
        return _ScaledMaskedSoftmax.apply(x, mask, float(scale))
    return scaled_masked_softmax_reference(x, mask, scale)
