"""Joining the job a launcher (torchrun, SLURM + torchrun, a plain env:// launch) started this process in."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def init_process_group_from_env(timeout: timedelta = timedelta(minutes=10)) -> bool:
    """Initialise the default process group from the launcher's environment (NCCL on GPU, gloo on CPU).
    Returns False when this process was not launched as part of a job.

    Under torchrun the agent's store outlives a restart (`--max-restarts`): without a per-attempt prefix the
    restarted ranks read the addresses the failed round published, and gloo cannot connect. Keys are
    therefore prefixed by TORCHELASTIC_RESTART_COUNT.
    """
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend, timeout=timeout)
        return True
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                is_master=False, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"megabio/attempt_{attempt}", agent_store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    return True
