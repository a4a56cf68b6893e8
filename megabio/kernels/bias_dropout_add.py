"""residual + dropout(x + bias): the tail of every residual branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_dropout_add_reference(
    x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Pure-PyTorch reference; dropout draws from the current default generator."""
    if bias is not None:
        x = x + bias
    return residual + F.dropout(x, p=p, training=training)


def bias_dropout_add(
    x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """residual + dropout(x + bias), bias broadcast over the last dim; no dropout when not training."""
    return bias_dropout_add_reference(x, bias, residual, p, training)
