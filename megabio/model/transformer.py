"""Transformer layer in pre-LN (Megatron) or post-LN (original BERT) order, and the layer stack."""

from __future__ import annotations

import math

import torch
from torch import nn

from megabio.config import ModelConfig
from megabio.kernels import bias_dropout_add
from megabio.model.attention import ParallelSelfAttention
from megabio.model.mlp import ParallelMLP
from megabio.model.norm import LayerNorm
from megabio.parallel.layers import normal_init
from megabio.parallel.mappings import gather_from_sequence_parallel_region
from megabio.parallel.random import RNGStatesTracker, checkpoint_with_rng
from megabio.parallel.state import ParallelState


class TransformerLayer(nn.Module):
    """pre:  x = x + Drop(Attn(LN_a(x)));  x = x + Drop(MLP(LN_m(x)))
    post: x = LN_a(x + Drop(Attn(x)));  x = LN_m(x + Drop(MLP(x)))

    `attention_layernorm` / `mlp_layernorm` belong to the attention / MLP sub-block: before it in pre-LN
    order, after its residual add in post-LN order.
    """

    def __init__(self, config: ModelConfig, state: ParallelState, rng_tracker: RNGStatesTracker) -> None:
        super().__init__()
        self.config, self.state, self.rng_tracker = config, state, rng_tracker
        # Megatron's scaled init for the projections that write into the residual stream.
        output_init = normal_init(config.init_method_std / math.sqrt(2.0 * config.num_layers))
        eps, sp = config.layernorm_epsilon, state.sequence_parallel
        self.attention_layernorm = LayerNorm(config.hidden_size, eps, sp)
        self.self_attention = ParallelSelfAttention(config, state, rng_tracker, output_init)
        self.mlp_layernorm = LayerNorm(config.hidden_size, eps, sp)
        self.mlp = ParallelMLP(config, state, output_init)

    def _residual(self, branch: tuple[torch.Tensor, torch.Tensor | None], residual: torch.Tensor) -> torch.Tensor:
        out, bias = branch
        # Under sequence parallelism the branch output is a sequence slice: dropout differs per TP rank.
        with self.rng_tracker.fork_if_sharded(self.state.sequence_parallel, out.device):
            return bias_dropout_add(out, bias, residual, self.config.hidden_dropout, self.training)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, rows: torch.Tensor | None = None
                ) -> torch.Tensor:
        """x: `[s, b, h]` (`[s/tp, b, h]` under sequence parallelism) -> same shape; with `rows` (bool
        `[b, s]`, not under sequence parallelism) the queries, attention, output projection, residuals and
        MLP run at those positions alone (keys and values everywhere) and the output is `[n, h]` in
        batch-major order."""
        residual = x if rows is None else x.transpose(0, 1)[rows]
        if self.config.layernorm_order == "pre":
            x = self._residual(self.self_attention(self.attention_layernorm(x), padding_mask, rows), residual)
            return self._residual(self.mlp(self.mlp_layernorm(x)), x)
        x = self.attention_layernorm(self._residual(self.self_attention(x, padding_mask, rows), residual))
        return self.mlp_layernorm(self._residual(self.mlp(x), x))


class TransformerEncoder(nn.Module):
    """The layer stack, a final LayerNorm in pre-LN order, and optional per-layer recomputation.

    Input `[s, b, h]` as the embeddings give it (a sequence slice under sequence parallelism); output the
    full `[s, b, h]` on every TP rank.
    """

    def __init__(self, config: ModelConfig, state: ParallelState, rng_tracker: RNGStatesTracker) -> None:
        super().__init__()
        self.config, self.state, self.rng_tracker = config, state, rng_tracker
        self.layers = nn.ModuleList(TransformerLayer(config, state, rng_tracker) for _ in range(config.num_layers))
        self.final_layernorm = (LayerNorm(config.hidden_size, config.layernorm_epsilon, state.sequence_parallel)
                                if config.layernorm_order == "pre" else None)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, rows: torch.Tensor | None = None
                ) -> torch.Tensor:
        """With `rows` (bool `[b, s]`) only those positions are returned, `[n, h]` in batch-major order:
        the last layer then runs its queries, attention, output projection and MLP at those positions alone
        (keys and values everywhere; under sequence parallelism, where a rank holds a slice of the sequence,
        they are picked from the full output)."""
        recompute = self.config.recompute_activations and torch.is_grad_enabled()
        rows_in_last_layer = rows is not None and not self.state.sequence_parallel
        for index, layer in enumerate(self.layers):
            layer_rows = rows if rows_in_last_layer and index == len(self.layers) - 1 else None
            if recompute:
                x = checkpoint_with_rng(layer, self.rng_tracker, x, padding_mask, layer_rows)
            else:
                x = layer(x, padding_mask, layer_rows)
        if self.final_layernorm is not None:
            x = self.final_layernorm(x)
        if self.state.sequence_parallel:
            # The heads after the encoder are replicated over TP, so the incoming gradient is already
            # complete on every rank: backward keeps this rank's slice rather than reduce-scattering.
            x = gather_from_sequence_parallel_region(x, self.state, grad_is_partial=False)  # [s, b, h]
        if rows is not None and not rows_in_last_layer:
            x = x.transpose(0, 1)[rows]
        return x
