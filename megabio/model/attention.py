"""Multi-head self-attention with heads split over tensor-parallel ranks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megabio.config import ModelConfig
from megabio.kernels import dropout, scaled_masked_softmax
from megabio.kernels.linear import linear
from megabio.parallel.layers import ColumnParallelLinear, InitMethod, RowParallelLinear, normal_init
from megabio.parallel.mappings import copy_to_tensor_parallel_region
from megabio.parallel.random import MODEL_PARALLEL_RNG, RNGStatesTracker
from megabio.parallel.sharding import divide
from megabio.parallel.state import ParallelState


class _SplitHeads(torch.autograd.Function):
    """`[s, b, np, k, hn]` -> k tensors `[b, np, s, hn]`, the k parts of one contiguous `[k, b, np, s, hn]`.

    One copy, so that the batched matmuls read Q, K and V in place (and their gradients come back in place)
    instead of copying each operand in forward and again in backward. The backward writes each part's
    gradient straight into the `[s, b, np, k, hn]` layout: one strided copy, where autograd's own
    (stacking the parts, then undoing the permute) would copy twice."""

    @staticmethod
    def forward(ctx, packed):
        ctx.set_materialize_grads(False)
        return packed.permute(3, 1, 2, 0, 4).contiguous().unbind(0)

    @staticmethod
    def backward(ctx, *grads):
        reference = next(g for g in grads if g is not None)
        batch, heads, seq_len, head_dim = reference.shape
        grad = reference.new_empty(seq_len, batch, heads, len(grads), head_dim)
        for part, part_grad in enumerate(grads):
            target = grad.select(3, part)
            if part_grad is None:
                target.zero_()
            else:
                target.copy_(part_grad.permute(2, 0, 1, 3))
        return grad


def split_heads(packed: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`[s, b, np, k, hn]` (k = 3 for Q, K, V) -> k tensors `[b, np, s, hn]`, as
    `packed.permute(3, 1, 2, 0, 4).contiguous().unbind(0)` gives them, with a backward that copies once."""
    return _SplitHeads.apply(packed)


class ParallelSelfAttention(nn.Module):
    """Self-attention; each TP rank owns num_heads / tp heads.

    The fused QKV projection is column-parallel with its rows laid out per head as `[heads, 3, head_dim]`
    (Megatron's layout), so a contiguous TP split hands each rank whole heads with their Q, K and V. The
    output projection is row-parallel and returns its bias unapplied for the fused bias-dropout-add.
    """

    def __init__(self, config: ModelConfig, state: ParallelState, rng_tracker: RNGStatesTracker,
                 output_init: InitMethod) -> None:
        super().__init__()
        self.config, self.rng_tracker = config, rng_tracker
        self.heads_per_rank = divide(config.num_attention_heads, state.tp_size, "num_attention_heads")
        self.head_dim = config.head_dim
        self.query_key_value = ColumnParallelLinear(
            config.hidden_size, 3 * config.hidden_size, state,
            init_method=normal_init(config.init_method_std))
        self.dense = RowParallelLinear(
            config.hidden_size, config.hidden_size, state, skip_bias_add=True, init_method=output_init)

    def _uses_sdpa(self, device: torch.device, dropout_p: float) -> bool:
        backend = self.config.attention_backend
        return backend == "sdpa" or (backend == "auto" and (device.type != "cpu" or dropout_p == 0.0))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, rows: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: `[s, b, h]` (or `[s/tp, b, h]`); padding_mask: bool `[b, 1, 1, s]`, True = padded key.

        With `rows` (bool `[b, s]`, not under sequence parallelism) only those positions are queried: the
        output is `[n, h]`, in batch-major order. Every position still serves as a key and value."""
        if rows is None:
            qkv, _ = self.query_key_value(x)  # [s, b, 3 * h / tp]
            seq_len, batch = qkv.shape[:2]
            qkv = qkv.view(seq_len, batch, self.heads_per_rank, 3, self.head_dim)  # [s, b, np, 3, hn]
            query, key, value = split_heads(qkv)  # 3 x [b, np, s, hn]
            context = self._attend(query, key, value, padding_mask)  # [b, np, s, hn]
            return self.dense(context.permute(2, 0, 1, 3).reshape(seq_len, batch, -1))  # [s, b, h / tp]
        query, key, value, slots = self._project_queries_at_rows(x, rows)
        context = self._attend(query, key, value, padding_mask)  # [b, np, m, hn]
        return self.dense(context.transpose(1, 2).flatten(0, 1)[slots].flatten(1))  # [n, h / tp]

    def _project_queries_at_rows(self, x: torch.Tensor, rows: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries `[b, np, m, hn]` at the rows alone, the i-th row of a sample in its slot i (m: the most
        rows of any sample; spare slots hold zeros); keys and values `[b, np, s, hn]` at every position;
        and the rows' slots `[n]` in batch-major order, as indices into the flattened `[b * m]`."""
        seq_len, batch, hidden = x.shape
        weight = self.query_key_value.weight.view(self.heads_per_rank, 3, self.head_dim, hidden)
        bias = self.query_key_value.bias.view(self.heads_per_rank, 3, self.head_dim)
        x = copy_to_tensor_parallel_region(x, self.query_key_value.state)  # gradients of both parts summed
        kv = linear(x, weight[:, 1:].reshape(-1, hidden), bias[:, 1:].reshape(-1))  # [s, b, np * 2 * hn]
        key, value = split_heads(kv.view(seq_len, batch, self.heads_per_rank, 2, self.head_dim))  # 2 x [b, np, s, hn]
        queries = linear(x.transpose(0, 1)[rows], weight[:, 0].reshape(-1, hidden), bias[:, 0].reshape(-1))
        width = int(rows.sum(1).max())
        slots = rows.nonzero(as_tuple=True)[0] * width + (rows.cumsum(1) - 1)[rows]
        padded = queries.new_zeros(batch * width, self.heads_per_rank, self.head_dim).index_copy(
            0, slots, queries.view(-1, self.heads_per_rank, self.head_dim))
        return padded.view(batch, width, self.heads_per_rank, self.head_dim).transpose(1, 2), key, value, slots

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                padding_mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(Q K^T / sqrt(hn), padded keys masked) V with attention dropout: `[b, np, sq, hn]`."""
        p = self.config.attention_dropout if self.training else 0.0
        # Attention probabilities belong to this rank's heads only: always the model-parallel stream.
        with self.rng_tracker.fork(MODEL_PARALLEL_RNG, query.device):
            if self._uses_sdpa(query.device, p):
                keep = None if padding_mask is None else ~padding_mask
                return F.scaled_dot_product_attention(query, key, value, attn_mask=keep, dropout_p=p)
            scores = torch.matmul(query, key.transpose(-2, -1))  # [b, np, sq, sk]
            probs = scaled_masked_softmax(scores, padding_mask, 1.0 / math.sqrt(self.head_dim))
            return torch.matmul(dropout(probs, p, self.training), value)
