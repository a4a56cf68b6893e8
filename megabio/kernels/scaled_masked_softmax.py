"""softmax(scale * x) over the last dim with masked positions excluded.

x: `[b, h, sq, sk]`; mask: bool, True = masked, broadcastable to x. A row whose keys are all masked gives
zeros (not NaN, not uniform), as Megatron's fused kernel does.
"""

from __future__ import annotations

import torch


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


def scaled_masked_softmax(x: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """softmax(scale * x + mask) over the last dim; masked keys get probability 0."""
    return scaled_masked_softmax_reference(x, mask, scale)
