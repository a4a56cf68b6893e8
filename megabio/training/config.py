"""TrainConfig: everything about a pretraining run but the model's shape (Megatron's flag names)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from megabio.config import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    micro_batch_size: int = 8
    """Samples per forward/backward on one data-parallel rank."""
    global_batch_size: int = 32
    """Samples per optimizer step over all ranks; a multiple of micro_batch_size x DP (gradient accumulation)."""
    seq_length: int = 128
    train_iters: int = 100
    lr: float = 1e-4
    min_lr: float = 0.0
    lr_warmup_fraction: float = 0.01
    lr_decay_style: str = "linear"
    """`linear`, `cosine` or `constant` decay to min_lr after warmup."""
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    """Clip the global gradient norm (TP-sharded parameters counted once) to this; 0 disables."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    precision: str = "fp32"
    """`fp32`, `bf16` (autocast) or `fp16` (autocast with dynamic loss scaling; overflow steps skipped)."""
    initial_loss_scale: float = 2.0**16
    loss_scale_window: int = 1000
    seed: int = 1234
    log_interval: int = 10
    save: str | None = None
    save_interval: int = 0
    load: str | None = None
    tensorboard_dir: str | None = None
    use_distributed_optimizer: bool = False
    """ZeRO-1: shard the AdamW state over the data-parallel ranks."""
    init_from: str | None = None
    """A general-domain checkpoint to start from (ignored when `load` holds a checkpoint to resume)."""

    def __post_init__(self) -> None:
        if self.lr_decay_style not in ("linear", "cosine", "constant"):
            raise ConfigError(f"--lr-decay-style {self.lr_decay_style!r}: choose linear, cosine or constant")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision {self.precision!r}: choose fp32, bf16 or fp16")
        for name in ("micro_batch_size", "global_batch_size", "seq_length", "train_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be at least 1")

    def num_micro_batches(self, data_parallel_size: int) -> int:
        per_step = self.micro_batch_size * data_parallel_size
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"--global-batch-size {self.global_batch_size} is not divisible by --micro-batch-size "
                f"{self.micro_batch_size} x data-parallel size {data_parallel_size}")
        return self.global_batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
