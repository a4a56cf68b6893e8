"""Batches for fine-tuning: dynamic padding (a batch is as long as its longest example), and optionally
examples of similar length together (`group_by_length`), so an epoch costs little more than its tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from megabio.parallel import ParallelState

BUCKET_BATCHES = 50
"""Batches per shuffle bucket: examples are shuffled, cut into buckets of this many batches, and sorted
by length within a bucket (the order of batches is then shuffled)."""


def training_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                     drop_below: int = 1, group_by_length: bool = True) -> list[list[int]]:
    """An epoch's batches of example indices, shuffled (by seed and epoch); with `group_by_length`,
    length-sorted within buckets, else random batches. Batches smaller than `drop_below` are dropped (every
    data-parallel rank needs an example)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * (BUCKET_BATCHES if group_by_length else 1)  # a one-batch bucket: random batches
    batches = []
    for first in range(0, len(order), bucket):
        chunk = sorted(order[first: first + bucket], key=lambda i: lengths[i])
        batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    batches = [b for b in batches if len(b) >= drop_below]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def evaluation_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """All examples once, sorted by length (least padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def rank_micro_batches(batch: Sequence[int], micro_batch_size: int, state: ParallelState) -> list[list[int]]:
    """This data-parallel rank's share of a global batch, cut into micro-batches."""
    share = batch[state.dp_rank:: state.dp_size]
    return [list(share[i: i + micro_batch_size]) for i in range(0, len(share), micro_batch_size)]


def pad_inputs(rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """`input_ids` right-padded with [PAD] (id 0) and the matching `attention_mask`."""
    return {"input_ids": pad(rows, 0), "attention_mask": pad([[1] * len(r) for r in rows], 0)}


def pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """`[len(rows), longest]` int64, right-padded with `value`."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out
