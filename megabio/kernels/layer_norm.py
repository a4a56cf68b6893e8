"""LayerNorm over the last dim, statistics in float32 for half-precision input."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_reference(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Pure-PyTorch reference (F.layer_norm computes half-precision statistics in float32)."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim."""
    return layer_norm_reference(x, weight, bias, eps)
