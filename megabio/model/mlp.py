"""The transformer MLP: h -> ffn (column-parallel) -> GeLU -> h (row-parallel)."""

from __future__ import annotations

import torch
from torch import nn

from megabio.config import ModelConfig
from megabio.kernels import bias_gelu
from megabio.parallel.layers import ColumnParallelLinear, InitMethod, RowParallelLinear, normal_init
from megabio.parallel.state import ParallelState


class ParallelMLP(nn.Module):
    """FC2(GeLU(FC1(x))). FC1's bias is fused into the GeLU; FC2's bias is returned for bias-dropout-add."""

    def __init__(self, config: ModelConfig, state: ParallelState, output_init: InitMethod) -> None:
        super().__init__()
        self.gelu_approximate = config.gelu_approximate
        self.dense_h_to_4h = ColumnParallelLinear(
            config.hidden_size, config.ffn_hidden_size, state, skip_bias_add=True,
            init_method=normal_init(config.init_method_std))
        self.dense_4h_to_h = RowParallelLinear(
            config.ffn_hidden_size, config.hidden_size, state, skip_bias_add=True, init_method=output_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        inner, bias = self.dense_h_to_4h(x)  # [s, b, ffn / tp]
        return self.dense_4h_to_h(bias_gelu(inner, bias, self.gelu_approximate))
