"""How full tensors map onto tensor-parallel shards, and back.

A sharded parameter carries `tensor_model_parallel = True` and `partition_dim` (the dim it is split along,
in contiguous equal chunks, rank order). Replicated parameters that see only a sequence slice under
sequence parallelism carry `sequence_parallel = True`: their gradients are partial sums over TP.
"""

from __future__ import annotations

import torch

from megabio.parallel.mappings import gather_along_first_dim
from megabio.parallel.state import ParallelState


def divide(numerator: int, denominator: int, what: str = "size") -> int:
    """Exact integer division with an error naming the quantity when it does not divide."""
    if numerator % denominator:
        raise ValueError(f"{what}={numerator} is not divisible by {denominator}")
    return numerator // denominator


def shard(full: torch.Tensor, partition_dim: int, state: ParallelState) -> torch.Tensor:
    """This rank's contiguous chunk of `full` along `partition_dim` (a copy, safe to wrap in a Parameter)."""
    size = divide(full.shape[partition_dim], state.tp_size, f"dim {partition_dim} of shape {tuple(full.shape)}")
    return full.narrow(partition_dim, state.tp_rank * size, size).clone()


def mark_tensor_parallel(param: torch.nn.Parameter, partition_dim: int) -> None:
    param.tensor_model_parallel = True
    param.partition_dim = partition_dim


def mark_sequence_parallel(param: torch.nn.Parameter) -> None:
    param.sequence_parallel = True


def is_tensor_parallel(param: torch.Tensor) -> bool:
    return bool(getattr(param, "tensor_model_parallel", False))


def gather_full(tensor: torch.Tensor, param: torch.Tensor, state: ParallelState) -> torch.Tensor:
    """The full-size version of `tensor` (a shard of `param`, or its gradient) gathered over TP.

    Replicated parameters are returned as they are. Collective: every TP rank must call it.
    """
    if not is_tensor_parallel(param) or state.tp_size == 1:
        return tensor
    dim = param.partition_dim
    gathered = gather_along_first_dim(tensor.detach().movedim(dim, 0), state)
    return gathered.movedim(0, dim).contiguous()
