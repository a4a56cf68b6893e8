"""Run a test function on several real processes joined by torch.distributed over gloo."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, function: Callable[..., None], world_size: int, store: str, args: tuple) -> None:
    torch.set_num_threads(1)  # the processes share two cores
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        function(*args)
    finally:
        dist.destroy_process_group()


def run_distributed(function: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run `function(*args)` on `world_size` spawned processes; a failure in any of them fails the caller.

    `function` must be importable (module level) so the spawned processes can find it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.start_processes(_entry, args=(function, world_size, store, args), nprocs=world_size,
                           start_method="spawn")
