"""Tensor-parallel linear and embedding layers (Megatron-LM's, with the layout passed in).

Weights are drawn at full size from the default generator and sliced, so a model built after
torch.manual_seed(s) holds the same numbers for any TP size. Activations are `[s, b, h]`; under sequence
parallelism the inputs of column-parallel and outputs of row-parallel layers are `[s / tp, b, h]`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from megabio.kernels.linear import linear
from megabio.parallel.mappings import (
    copy_to_tensor_parallel_region,
    gather_from_sequence_parallel_region,
    gather_from_tensor_parallel_region,
    reduce_from_tensor_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
    scatter_to_tensor_parallel_region,
)
from megabio.parallel.sharding import divide, mark_sequence_parallel, mark_tensor_parallel, shard
from megabio.parallel.state import ParallelState

InitMethod = Callable[[torch.Tensor], torch.Tensor]


def normal_init(std: float) -> InitMethod:
    """N(0, std) initialisation, Megatron's `init_method_normal`."""
    return lambda tensor: nn.init.normal_(tensor, mean=0.0, std=std)


def _sharded_weight(
    shape: tuple[int, int], partition_dim: int, init_method: InitMethod, state: ParallelState,
    dtype: torch.dtype | None,
) -> nn.Parameter:
    master = torch.empty(shape, dtype=torch.float32)
    init_method(master)
    weight = nn.Parameter(shard(master, partition_dim, state).to(dtype or torch.get_default_dtype()))
    mark_tensor_parallel(weight, partition_dim)
    return weight


def _zero_bias(size: int, dtype: torch.dtype, wanted: bool, mark) -> nn.Parameter | None:
    """A zero bias of `size`, tagged by `mark`, or None when the layer has none."""
    if not wanted:
        return None
    bias = nn.Parameter(torch.zeros(size, dtype=dtype))
    mark(bias)
    return bias


class ColumnParallelLinear(nn.Module):
    """Y = XA + b with A split along its columns (output features): rank i computes Y_i = X A_i + b_i.

    Forward input: identity (or all-gather of the sequence under sequence parallelism); backward: the
    input gradient is all-reduced (or reduce-scattered). With `gather_output` the output is all-gathered;
    with `skip_bias_add` the bias is returned for fusion into the next op instead of being added.
    """

    def __init__(self, input_size: int, output_size: int, state: ParallelState, *, bias: bool = True,
                 gather_output: bool = False, skip_bias_add: bool = False,
                 init_method: InitMethod = normal_init(0.02), dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.state = state
        self.gather_output = gather_output
        self.skip_bias_add = skip_bias_add
        self.output_size_per_partition = divide(output_size, state.tp_size, "output_size")
        # [out / tp, in]
        self.weight = _sharded_weight((output_size, input_size), 0, init_method, state, dtype)
        self.bias = _zero_bias(self.output_size_per_partition, self.weight.dtype, bias,
                               lambda b: mark_tensor_parallel(b, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.state.sequence_parallel:
            x = gather_from_sequence_parallel_region(x, self.state)  # [s/tp, b, h] -> [s, b, h]
        else:
            x = copy_to_tensor_parallel_region(x, self.state)
        bias = self.bias if not self.skip_bias_add else None
        y = linear(x, self.weight, bias)  # [s, b, out / tp]
        if self.gather_output:
            y = gather_from_tensor_parallel_region(y, self.state)  # [s, b, out]
        return y, (self.bias if self.skip_bias_add else None)


class RowParallelLinear(nn.Module):
    """Y = XA + b with A split along its rows (input features): Y = sum_i X_i A_i, summed by all-reduce.

    Input: already split along its last dim (`input_is_parallel`), else scattered here. Output: all-reduced
    over TP, or reduce-scattered along the sequence under sequence parallelism. The bias is replicated
    and added after the reduction (or returned, with `skip_bias_add`).
    """

    def __init__(self, input_size: int, output_size: int, state: ParallelState, *, bias: bool = True,
                 input_is_parallel: bool = True, skip_bias_add: bool = False,
                 init_method: InitMethod = normal_init(0.02), dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.state = state
        self.input_is_parallel = input_is_parallel
        self.skip_bias_add = skip_bias_add
        self.input_size_per_partition = divide(input_size, state.tp_size, "input_size")
        # [out, in / tp]
        self.weight = _sharded_weight((output_size, input_size), 1, init_method, state, dtype)
        # Replicated; under sequence parallelism each rank adds it to a sequence slice (gradients summed over TP).
        self.bias = _zero_bias(output_size, self.weight.dtype, bias,
                               mark_sequence_parallel if state.sequence_parallel else lambda b: None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.input_is_parallel:
            x = scatter_to_tensor_parallel_region(x, self.state)
        partial = linear(x, self.weight)  # [s, b, out], a partial sum over TP
        if self.state.sequence_parallel:
            y = reduce_scatter_to_sequence_parallel_region(partial, self.state)  # [s/tp, b, out]
        else:
            y = reduce_from_tensor_parallel_region(partial, self.state)
        if self.skip_bias_add or self.bias is None:
            return y, self.bias
        return y + self.bias, None


class VocabParallelEmbedding(nn.Module):
    """Embedding whose rows (vocabulary) are split over TP.

    Each rank looks up the ids in its row range, zeroes the others, and the partial results are
    all-reduced. Rows past `init_rows` (the vocabulary padding) are zero.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, state: ParallelState, *,
                 init_rows: int | None = None, init_method: InitMethod = normal_init(0.02),
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.state = state
        self.num_embeddings = num_embeddings
        self.rows_per_partition = divide(num_embeddings, state.tp_size, "padded vocabulary size")
        self.vocab_start = state.tp_rank * self.rows_per_partition
        self.vocab_end = self.vocab_start + self.rows_per_partition
        init_rows = num_embeddings if init_rows is None else init_rows

        def init_real_rows(master: torch.Tensor) -> torch.Tensor:
            # Draw only the real rows, so the numbers do not depend on how much padding TP needs.
            master.zero_()
            init_method(master[:init_rows])
            return master

        # [vocab / tp, h]
        self.weight = _sharded_weight((num_embeddings, embedding_dim), 0, init_real_rows, state, dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.state.tp_size == 1:
            return F.embedding(input_ids, self.weight)
        outside = (input_ids < self.vocab_start) | (input_ids >= self.vocab_end)
        local_ids = (input_ids - self.vocab_start).masked_fill(outside, 0)
        partial = F.embedding(local_ids, self.weight).masked_fill(outside.unsqueeze(-1), 0.0)
        return reduce_from_tensor_parallel_region(partial, self.state)
