"""Learning rate: linear warmup, then linear, cosine or no decay to min_lr (a pure function of the step,
so resuming needs no scheduler state beyond the iteration)."""

from __future__ import annotations

import math

from megabio.training.config import TrainConfig


def learning_rate(iteration: int, config: TrainConfig) -> float:
    """The LR for optimizer step `iteration` (0-based). Warmup rises from 0 at the first step to the peak at
    step `warmup`, as Megatron-LM's scheduler and transformers' `get_linear_schedule_with_warmup` run it."""
    warmup = int(config.lr_warmup_fraction * config.train_iters)
    if warmup and iteration < warmup:
        return config.lr * iteration / warmup
    if config.lr_decay_style == "constant":
        return config.lr
    progress = min(1.0, (iteration - warmup) / max(1, config.train_iters - warmup))
    if config.lr_decay_style == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = 1.0 - progress
    return config.min_lr + (config.lr - config.min_lr) * factor
