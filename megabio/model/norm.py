"""LayerNorm as a module over `megabio.kernels.layer_norm`."""

from __future__ import annotations

import torch
from torch import nn

from megabio.kernels import layer_norm
from megabio.parallel.sharding import mark_sequence_parallel


class LayerNorm(nn.Module):
    """LayerNorm over the last dim. With `sequence_parallel` it sees a sequence slice, so its gradients
    are partial sums over TP (marked for `finalize_model_grads`)."""

    def __init__(self, hidden_size: int, eps: float, sequence_parallel: bool = False,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(hidden_size, dtype=dtype))
        if sequence_parallel:
            mark_sequence_parallel(self.weight)
            mark_sequence_parallel(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps)
