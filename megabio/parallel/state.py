"""The parallel layout as a value: process groups and this rank's place in them.

Ranks are laid out TP-innermost, as in Megatron-LM: with world size 8 and TP=2 the tensor-parallel groups
are [0,1] [2,3] [4,5] [6,7] (neighbours, so a group stays within a node) and the data-parallel groups are
[0,2,4,6] [1,3,5,7]. A ParallelState is built once and passed explicitly to every layer that communicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from megabio.config import ConfigError


@dataclass(frozen=True)
class ParallelState:
    """Tensor- and data-parallel groups, sizes and ranks for the calling process.

    A group is None only when its size is 1 (no communication happens then). Construct directly with
    sizes and ranks and no groups to build one rank's shard of a model without communicating (for
    example on the meta device to count its parameters).
    """

    tp_size: int = 1
    tp_rank: int = 0
    dp_size: int = 1
    dp_rank: int = 0
    tp_group: dist.ProcessGroup | None = None
    dp_group: dist.ProcessGroup | None = None
    sequence_parallel: bool = False
    """Run LayerNorm and dropout on sequence slices of length s / TP (Megatron's sequence parallelism)."""

    def __post_init__(self) -> None:
        if not 0 <= self.tp_rank < self.tp_size:
            raise ConfigError(f"tp_rank={self.tp_rank} is outside [0, tp_size={self.tp_size})")
        if not 0 <= self.dp_rank < self.dp_size:
            raise ConfigError(f"dp_rank={self.dp_rank} is outside [0, dp_size={self.dp_size})")

    @classmethod
    def single(cls) -> ParallelState:
        """The layout of one process: no tensor or data parallelism."""
        return cls()

    @property
    def world_size(self) -> int:
        return self.tp_size * self.dp_size


def distributed() -> bool:
    """Whether this process is part of an initialised torch.distributed job."""
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank of the job; nothing to wait for in a single process."""
    if distributed():
        dist.barrier()


def initialize(tensor_model_parallel_size: int = 1, sequence_parallel: bool = False) -> ParallelState:
    """Build the TP and DP groups over the initialised default process group.

    Every rank must call this (group creation is collective). Without an initialised process group it
    returns the single-process state, so the same code runs under torchrun and in a plain Python process.
    """
    tp = tensor_model_parallel_size
    if not dist.is_available() or not dist.is_initialized():
        if tp != 1:
            raise ConfigError(
                f"tensor_model_parallel_size={tp} needs torch.distributed: launch with torchrun "
                f"--nproc-per-node {tp} (or more) and call torch.distributed.init_process_group first")
        return ParallelState(sequence_parallel=False)
    world, rank = dist.get_world_size(), dist.get_rank()
    if tp < 1 or world % tp:
        raise ConfigError(
            f"world size {world} is not divisible by tensor_model_parallel_size={tp}; "
            f"launch a multiple of {tp} processes or change the TP size")
    dp = world // tp
    tp_group = dp_group = None
    # new_group is collective: every rank creates every group, in the same order, and keeps its own.
    for start in range(0, world, tp):
        ranks = list(range(start, start + tp))
        group = dist.new_group(ranks) if tp > 1 else None
        if rank in ranks:
            tp_group = group
    for offset in range(tp):
        ranks = list(range(offset, world, tp))
        group = dist.new_group(ranks) if dp > 1 else None
        if rank in ranks:
            dp_group = group
    return ParallelState(
        tp_size=tp, tp_rank=rank % tp, dp_size=dp, dp_rank=rank // tp,
        tp_group=tp_group, dp_group=dp_group, sequence_parallel=sequence_parallel and tp > 1)
