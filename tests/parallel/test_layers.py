"""Each parallel building block on 2 real processes against its single-process equivalent (float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megabio.parallel import (
    ColumnParallelLinear,
    ParallelState,
    RowParallelLinear,
    VocabParallelEmbedding,
    gather_from_sequence_parallel_region,
    gather_full,
    initialize,
    reduce_scatter_to_sequence_parallel_region,
    scatter_to_sequence_parallel_region,
    shard,
    vocab_parallel_cross_entropy,
)
from tests.distributed import run_distributed

TOL = dict(rtol=1e-12, atol=1e-12)


def _check_cross_entropy(state: ParallelState) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 12, dtype=torch.float64, generator=generator) * 4
    target = torch.randint(0, 12, (3, 5), generator=generator)
    target[0, :2] = -100
    full = logits.clone().requires_grad_()
    expected = F.cross_entropy(full.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="none")
    weights = torch.rand(expected.shape, dtype=torch.float64, generator=generator)
    (expected * weights).sum().backward()

    local = shard(logits, 2, state).requires_grad_()
    loss = vocab_parallel_cross_entropy(local, target, state)
    torch.testing.assert_close(loss.flatten(), expected.detach(), **TOL)
    (loss.flatten() * weights).sum().backward()
    torch.testing.assert_close(local.grad, shard(full.grad, 2, state), **TOL)


def _check_linear_layers(state: ParallelState) -> None:
    x = torch.randn(6, 2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(9))  # [s, b, h]
    torch.manual_seed(0)
    column = ColumnParallelLinear(8, 12, state, gather_output=True).double()
    torch.manual_seed(0)
    full_column = ColumnParallelLinear(8, 12, ParallelState.single()).double()
    torch.testing.assert_close(column(x)[0], full_column(x)[0], **TOL)

    torch.manual_seed(1)
    row = RowParallelLinear(12, 8, state, input_is_parallel=False).double()
    torch.manual_seed(1)
    full_row = RowParallelLinear(12, 8, ParallelState.single()).double()
    with torch.no_grad():
        row.bias.fill_(0.5)
        full_row.bias.fill_(0.5)
    y = torch.randn(6, 2, 12, dtype=torch.float64, requires_grad=True)
    y_full = y.detach().clone().requires_grad_()
    out, _ = row(y)
    expected, _ = full_row(y_full)
    torch.testing.assert_close(out, expected, **TOL)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(y.grad, y_full.grad, **TOL)
    torch.testing.assert_close(gather_full(row.weight.grad, row.weight, state), full_row.weight.grad, **TOL)

    torch.manual_seed(2)
    embedding = VocabParallelEmbedding(16, 4, state, init_rows=13).double()
    torch.manual_seed(2)
    full_embedding = VocabParallelEmbedding(16, 4, ParallelState.single(), init_rows=13).double()
    ids = torch.tensor([[0, 7, 8, 12], [15, 3, 9, 1]])
    torch.testing.assert_close(embedding(ids), F.embedding(ids, full_embedding.weight), **TOL)
    assert full_embedding.weight[13:].abs().max() == 0, "padding rows must be zero"


def _check_sequence_parallel_mappings(state: ParallelState) -> None:
    generator = torch.Generator().manual_seed(state.tp_rank)
    x = torch.randn(4, 3, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    # Reduce-scatter: rank r keeps rows of the sum over ranks.
    summed = sum(torch.randn(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(r))
                 for r in range(state.tp_size))
    scattered = reduce_scatter_to_sequence_parallel_region(x, state)
    torch.testing.assert_close(scattered, summed.chunk(state.tp_size)[state.tp_rank], **TOL)
    # Gather undoes scatter; backward of scatter is the gather of the gradient.
    full = torch.arange(8.0, dtype=torch.float64).view(4, 2).requires_grad_()
    local = scatter_to_sequence_parallel_region(full, state)
    torch.testing.assert_close(gather_from_sequence_parallel_region(local.detach(), state), full.detach(), **TOL)
    (local * (state.tp_rank + 1)).sum().backward()
    expected = torch.cat([torch.full((2, 2), r + 1.0, dtype=torch.float64) for r in range(state.tp_size)])
    torch.testing.assert_close(full.grad, expected, **TOL)


def check_parallel_building_blocks() -> None:
    state = initialize(tensor_model_parallel_size=2)
    _check_cross_entropy(state)
    _check_linear_layers(state)
    _check_sequence_parallel_mappings(state)


def test_parallel_building_blocks_match_single_process():
    run_distributed(check_parallel_building_blocks, 2)


def test_cross_entropy_single_process_half_precision():
    """bf16 logits: statistics in float32, result matches the float32 computation on the same values."""
    logits = torch.randn(7, 30).bfloat16()
    target = torch.randint(0, 30, (7,))
    loss = vocab_parallel_cross_entropy(logits, target, ParallelState.single())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), target, reduction="none"))
