"""What a run reports as it goes: throughput over a logging window, peak memory, model TFLOP/s, a text
line on the first rank and TensorBoard scalars."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from megabio.config import ModelConfig
from megabio.parallel import ParallelState, distributed
from megabio.sizing import layer_matmul_parameters


def peak_memory_bytes(device: torch.device) -> int:
    """This process's peak memory: allocated tensor memory on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _max_over_ranks(value: float, device: torch.device) -> float:
    if not distributed():
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def tensorboard_writer(directory: str | None, state: ParallelState):
    """A SummaryWriter on the first rank when `directory` is set, else None."""
    if not directory or state.tp_rank != 0 or state.dp_rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(directory)


def model_tflops(model_config: ModelConfig, tokens_per_second: float) -> float:
    """Model FLOPs per token: 6 x the layers' matmul weights (forward + backward), the usual estimate."""
    return 6 * layer_matmul_parameters(model_config) * tokens_per_second / 1e12


class ProgressLog:
    """Accumulates samples and tokens between reports; `report` adds throughput, memory and TFLOP/s to a
    record, prints one line on the first rank and writes every numeric field to TensorBoard under `prefix`.
    Collective (peak memory is the maximum over ranks): every rank calls `report` at the same steps."""

    def __init__(self, model_config: ModelConfig, state: ParallelState, device: torch.device,
                 log: Callable[[str], None], tensorboard_dir: str | None, prefix: str = "train") -> None:
        self.model_config, self.state, self.device, self.log, self.prefix = model_config, state, device, log, prefix
        self.writer = tensorboard_writer(tensorboard_dir, state)
        self._restart()

    def _restart(self) -> None:
        self.start, self.tokens, self.samples = time.monotonic(), 0, 0

    def count(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens

    def report(self, record: dict[str, Any], step: int, fields: list[tuple[str, str]]) -> None:
        """`fields`: (record key, printed name) for the text line, printed before the throughput fields."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        record["peak_memory_mib"] = _max_over_ranks(peak_memory_bytes(self.device), self.device) / 2**20
        record["samples_per_second"] = self.samples / elapsed
        record["tokens_per_second"] = self.tokens / elapsed
        record["model_tflops"] = model_tflops(self.model_config, record["tokens_per_second"])
        if self.state.tp_rank == 0 and self.state.dp_rank == 0:
            parts = [f"{name} {_format(record[key])}" for key, name in fields]
            parts += [f"samples/s {record['samples_per_second']:,.1f}", f"tokens/s {record['tokens_per_second']:,.0f}",
                      f"model TFLOP/s {record['model_tflops']:.3f}",
                      f"peak memory/rank {record['peak_memory_mib']:,.0f} MiB"]
            self.log(" | ".join(parts))
        self.scalars(record, step)
        self._restart()

    def scalars(self, record: dict[str, Any], step: int, prefix: str | None = None) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, int | float) and key != "iteration":
                self.writer.add_scalar(f"{prefix or self.prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if 0 < abs(value) < 1e-2 else f"{value:.4f}"
    return str(value)
