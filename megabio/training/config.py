"""TrainConfig: everything about a training run but the model's shape (fields named after Megatron's flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from megabio.config import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]
LrDecayStyle = Literal["linear", "cosine", "constant"]


@dataclass(frozen=True)
class TrainConfig:
    micro_batch_size: int = 8
    """Samples per forward/backward on one data-parallel rank."""
    global_batch_size: int = 32
    """Samples per optimizer step over all ranks; a multiple of micro_batch_size x DP (gradient accumulation)."""
    seq_length: int = 128
    """Tokens per sample."""
    train_iters: int = 100
    """Optimizer steps of the whole run; the LR schedule spans them."""
    lr: float = 1e-4
    """Peak learning rate, reached at the end of warmup."""
    min_lr: float = 0.0
    """Learning rate at the end of decay."""
    lr_warmup_fraction: float = 0.01
    """Fraction of train_iters with a linear warmup from 0 to lr."""
    lr_decay_style: LrDecayStyle = "linear"
    """`linear`, `cosine` or `constant` decay to min_lr after warmup."""
    weight_decay: float = 0.01
    """AdamW weight decay, not applied to biases and LayerNorm weights."""
    clip_grad: float = 1.0
    """Clip the global gradient norm (TP-sharded parameters counted once) to this; 0 disables."""
    adam_beta1: float = 0.9
    """AdamW's first-moment decay."""
    adam_beta2: float = 0.999
    """AdamW's second-moment decay."""
    adam_eps: float = 1e-8
    """AdamW's denominator epsilon."""
    precision: Precision = "fp32"
    """`fp32`, `bf16` (autocast) or `fp16` (autocast with dynamic loss scaling; overflow steps skipped)."""
    initial_loss_scale: float = 2.0**16
    """fp16: the loss scale at the start (halved on overflow)."""
    loss_scale_window: int = 1000
    """fp16: clean steps after which the loss scale doubles."""
    seed: int = 1234
    """Seeds the weights, dropout and the data order."""
    log_interval: int = 10
    """Steps between log lines (the first and last step are always logged)."""
    save: str | None = None
    """Directory for checkpoints; None saves none."""
    save_interval: int = 0
    """Steps between checkpoints (0: only at the end or when stopped)."""
    load: str | None = None
    """Directory to resume from when it holds a checkpoint."""
    tensorboard_dir: str | None = None
    """Write TensorBoard scalars here."""
    use_distributed_optimizer: bool = False
    """ZeRO-1: shard the AdamW state over the data-parallel ranks."""
    init_from: str | None = None
    """A general-domain checkpoint to start from (ignored when `load` holds a checkpoint to resume)."""

    def __post_init__(self) -> None:
        if self.lr_decay_style not in ("linear", "cosine", "constant"):
            raise ConfigError(f"lr_decay_style {self.lr_decay_style!r}: choose linear, cosine or constant")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision {self.precision!r}: choose fp32, bf16 or fp16")
        for name in ("micro_batch_size", "global_batch_size", "seq_length", "train_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be at least 1")

    def num_micro_batches(self, data_parallel_size: int) -> int:
        per_step = self.micro_batch_size * data_parallel_size
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not divisible by micro_batch_size "
                f"{self.micro_batch_size} x data-parallel size {data_parallel_size}: make it a multiple")
        return self.global_batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
