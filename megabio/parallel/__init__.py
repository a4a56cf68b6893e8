"""Tensor and data parallelism over torch.distributed, with the layout passed explicitly."""

from megabio.parallel.cross_entropy import vocab_parallel_cross_entropy
from megabio.parallel.grads import (
    allreduce_data_parallel_grads,
    allreduce_sequence_parallel_grads,
    finalize_model_grads,
)
from megabio.parallel.layers import ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding
from megabio.parallel.mappings import (
    copy_to_tensor_parallel_region,
    gather_from_sequence_parallel_region,
    gather_from_tensor_parallel_region,
    reduce_from_tensor_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
    scatter_to_sequence_parallel_region,
    scatter_to_tensor_parallel_region,
)
from megabio.parallel.random import (
    MODEL_PARALLEL_RNG,
    RNGStatesTracker,
    checkpoint_with_rng,
    model_parallel_rng_tracker,
)
from megabio.parallel.sharding import gather_full, is_tensor_parallel, shard
from megabio.parallel.state import ParallelState, barrier, distributed, initialize

__all__ = [
    "MODEL_PARALLEL_RNG",
    "ColumnParallelLinear",
    "ParallelState",
    "RNGStatesTracker",
    "RowParallelLinear",
    "VocabParallelEmbedding",
    "allreduce_data_parallel_grads",
    "allreduce_sequence_parallel_grads",
    "barrier",
    "checkpoint_with_rng",
    "copy_to_tensor_parallel_region",
    "distributed",
    "finalize_model_grads",
    "gather_from_sequence_parallel_region",
    "gather_from_tensor_parallel_region",
    "gather_full",
    "initialize",
    "is_tensor_parallel",
    "model_parallel_rng_tracker",
    "reduce_from_tensor_parallel_region",
    "reduce_scatter_to_sequence_parallel_region",
    "scatter_to_sequence_parallel_region",
    "scatter_to_tensor_parallel_region",
    "shard",
    "vocab_parallel_cross_entropy",
]
