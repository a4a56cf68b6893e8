"""Gradient reductions that make a parallel step equal a single-process step.

After backward: gradients of sequence-parallel parameters (LayerNorms and row-parallel biases, which saw
only a sequence slice) are summed over TP, and every gradient is averaged over DP. Each reduction
flattens the gradients into one buffer, so it costs one collective, not one per parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from megabio.parallel.state import ParallelState


def _all_reduce_coalesced(grads: list[torch.Tensor], group: dist.ProcessGroup | None,
                          scale: float = 1.0) -> None:
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat, group=group)
    if scale != 1.0:
        flat.mul_(scale)
    for grad, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(reduced)


def _grads(params: Iterable[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def allreduce_sequence_parallel_grads(model: nn.Module, state: ParallelState) -> None:
    """Sum over TP the gradients of parameters marked `sequence_parallel`."""
    if state.sequence_parallel and state.tp_size > 1:
        params = [p for p in model.parameters() if getattr(p, "sequence_parallel", False)]
        _all_reduce_coalesced(_grads(params), state.tp_group)


def allreduce_data_parallel_grads(model: nn.Module, state: ParallelState) -> None:
    """Average every gradient over the DP group."""
    if state.dp_size > 1:
        _all_reduce_coalesced(_grads(model.parameters()), state.dp_group, scale=1.0 / state.dp_size)


def finalize_model_grads(model: nn.Module, state: ParallelState) -> None:
    """All gradient reductions a step needs after backward, in order."""
    allreduce_sequence_parallel_grads(model, state)
    allreduce_data_parallel_grads(model, state)
