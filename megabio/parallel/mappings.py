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


class _CopyToTP(torch.autograd.Function):
    """Forward: identity. Backward: all-reduce over TP."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return x

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad, ctx.state), None


class _ReduceFromTP(torch.autograd.Function):
    """Forward: all-reduce over TP. Backward: identity."""

    @staticmethod
    def forward(ctx, x, state):
        return _all_reduce(x.clone(), state)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _ScatterToTP(torch.autograd.Function):
    """Forward: keep this rank's chunk of the last dim. Backward: all-gather the last dim."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return _split_last(x, state)

    @staticmethod
    def backward(ctx, grad):
        return _gather_last(grad, ctx.state), None


class _GatherFromTP(torch.autograd.Function):
    """Forward: all-gather the last dim. Backward: keep this rank's chunk."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return _gather_last(x, state)

    @staticmethod
    def backward(ctx, grad):
        return _split_last(grad, ctx.state), None


class _ScatterToSP(torch.autograd.Function):
    """Forward: keep this rank's slice of the sequence (dim 0). Backward: all-gather the sequence."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return _split_first(x, state)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad, ctx.state), None


class _GatherFromSP(torch.autograd.Function):
    """Forward: all-gather the sequence (dim 0). Backward: reduce-scatter when the consumer's gradient is a
    TP partial sum (a column-parallel layer follows), else keep this rank's slice (replicated consumer)."""

    @staticmethod
    def forward(ctx, x, state, grad_is_partial):
        ctx.state, ctx.grad_is_partial = state, grad_is_partial
        return _gather_first(x, state)

    @staticmethod
    def backward(ctx, grad):
        if ctx.grad_is_partial:
            return _reduce_scatter_first(grad, ctx.state), None, None
        return _split_first(grad, ctx.state), None, None


class _ReduceScatterToSP(torch.autograd.Function):
    """Forward: reduce-scatter the sequence (dim 0). Backward: all-gather the sequence."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return _reduce_scatter_first(x, state)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad, ctx.state), None


def copy_to_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _CopyToTP.apply(x, state) if state.tp_size > 1 else x


def reduce_from_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _ReduceFromTP.apply(x, state) if state.tp_size > 1 else x


def scatter_to_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _ScatterToTP.apply(x, state) if state.tp_size > 1 else x


def gather_from_tensor_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _GatherFromTP.apply(x, state) if state.tp_size > 1 else x


def scatter_to_sequence_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _ScatterToSP.apply(x, state) if state.tp_size > 1 else x


def gather_from_sequence_parallel_region(
    x: torch.Tensor, state: ParallelState, grad_is_partial: bool = True
) -> torch.Tensor:
    return _GatherFromSP.apply(x, state, grad_is_partial) if state.tp_size > 1 else x


def reduce_scatter_to_sequence_parallel_region(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    return _ReduceScatterToSP.apply(x, state) if state.tp_size > 1 else x


def gather_along_first_dim(x: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """All-gather along dim 0 without autograd (for tooling: gathering shards, checkpoint merging)."""
    return _gather_first(x, state)
