"""Autograd-aware communication over the tensor-parallel group.

Each function is the transpose of its partner, so the backward of one is the forward of the other:
copy <-> reduce, scatter <-> gather (last dim), and for sequence parallelism scatter <-> gather and
reduce-scatter <-> gather along the first (sequence) dim. All take the ParallelState explicitly and are the
identity when TP is 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megabio.parallel.state import ParallelState

# torch 2.13 renamed the tensor collectives; keep working on older releases too.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _all_reduce(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    x = x.contiguous()
    dist.all_reduce(x, group=state.tp_group)
    return x


def _split_last(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    return x.chunk(state.tp_size, dim=-1)[state.tp_rank].contiguous()


def _gather_last(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    # Move the last dim first so each rank's piece is one contiguous block of the collective.
    gathered = _gather_first(x.movedim(-1, 0), state)  # [tp * n, ...]
    return gathered.movedim(0, -1).contiguous()  # [..., tp * n]


def _split_first(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    if x.shape[0] % state.tp_size:
        raise ValueError(
            f"sequence length {x.shape[0]} is not divisible by tensor_model_parallel_size={state.tp_size}, "
            f"which sequence parallelism needs; pad the sequence to a multiple of {state.tp_size}")
    return x.chunk(state.tp_size, dim=0)[state.tp_rank].contiguous()


def _gather_first(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    x = x.contiguous()
    out = x.new_empty((x.shape[0] * state.tp_size, *x.shape[1:]))
    _all_gather_single(out, x, group=state.tp_group)
    return out


def _reduce_scatter_first(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    if state.tp_size == 1:
        return x
    x = x.contiguous()
    out = x.new_empty((x.shape[0] // state.tp_size, *x.shape[1:]))
    _reduce_scatter_single(out, x, group=state.tp_group)
    return out


def _identity(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return x


def _all_reduce_copy(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _all_reduce(x.clone(), state)  # the input may be needed by autograd elsewhere


class _Conjugate(torch.autograd.Function):
    """Forward: `forward(x, state)`. Backward: `backward(grad, state)`, the forward's transpose."""

    @staticmethod
    def forward(ctx, x, state, forward, backward):
        ctx.state, ctx.transpose = state, backward
        return forward(x, state)

    @staticmethod
    def backward(ctx, grad):
        return ctx.transpose(grad, ctx.state), None, None, None


def _mapping(x: torch.Tensor, state: ParallelState, forward, backward) -> torch.Tensor:
    return _Conjugate.apply(x, state, forward, backward) if state.tp_size > 1 else x


def copy_to_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: identity. Backward: all-reduce over TP."""
    return _mapping(x, state, _identity, _all_reduce)


def reduce_from_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: all-reduce over TP. Backward: identity."""
    return _mapping(x, state, _all_reduce_copy, _identity)


def scatter_to_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: keep this rank's chunk of the last dim. Backward: all-gather the last dim."""
    return _mapping(x, state, _split_last, _gather_last)


def gather_from_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: all-gather the last dim. Backward: keep this rank's chunk."""
    return _mapping(x, state, _gather_last, _split_last)


def scatter_to_sequence_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: keep this rank's slice of the sequence (dim 0). Backward: all-gather the sequence."""
    return _mapping(x, state, _split_first, _gather_first)


def gather_from_sequence_parallel_region(
    x: torch.Tensor, state: ParallelState, grad_is_partial: bool = True
) -> torch.Tensor:
    """Forward: all-gather the sequence (dim 0). Backward: reduce-scatter when the consumer's gradient is a
    TP partial sum (a column-parallel layer follows), else keep this rank's slice (replicated consumer)."""
    return _mapping(x, state, _gather_first, _reduce_scatter_first if grad_is_partial else _split_first)


def reduce_scatter_to_sequence_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """Forward: reduce-scatter the sequence (dim 0). Backward: all-gather the sequence."""
    return _mapping(x, state, _reduce_scatter_first, _gather_first)


def gather_along_first_dim(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """All-gather along dim 0 without autograd (for tooling: gathering shards, checkpoint merging)."""
    return _gather_first(x, state)
