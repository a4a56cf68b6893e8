"""gelu(x + bias), exact (erf) or tanh-approximated: the approximation is always an explicit choice."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_gelu_reference(x: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """Pure-PyTorch reference."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate={approximate!r} must be 'none' (erf) or 'tanh'")
    return F.gelu(x if bias is None else x + bias, approximate=approximate)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """gelu(x + bias) with bias broadcast over the last dim."""
    return bias_gelu_reference(x, bias, approximate)
