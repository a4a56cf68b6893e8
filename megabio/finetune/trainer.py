"""The fine-tuning loop on the engine: epochs of shuffled (optionally length-grouped) batches, a dev
evaluation after each epoch, and the weights of the best dev score kept (in memory, this rank's shard)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from megabio.finetune.batching import rank_micro_batches, training_batches
from megabio.finetune.config import FinetuneConfig
from megabio.training.engine import Batch, Engine
from megabio.training.progress import ProgressLog

_LOGGED = [("epoch", "epoch"), ("iteration", "iteration"), ("loss", "loss"), ("lr", "lr"),
           ("grad_norm", "grad norm")]


@dataclass
class FitResult:
    dev_scores: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    """Mean training loss of each epoch."""


def fit(engine: Engine, config: FinetuneConfig, lengths: Sequence[int], collate: Callable[[list[int]], Batch],
        evaluate: Callable[[], float], progress: ProgressLog, log: Callable[[str], None]) -> FitResult:
    """Train `config.epochs` epochs over examples of `lengths` (`collate(indices)` builds a micro-batch);
    `evaluate()` scores the dev set after each epoch. Ends with the best epoch's weights in the model."""
    state = engine.state
    global_batch = config.global_batch(state.dp_size)
    result, best, best_weights, iteration = FitResult(), float("-inf"), None, 0
    for epoch in range(config.epochs):
        start = time.monotonic()
        batches = training_batches(lengths, global_batch, config.seed, epoch, drop_below=state.dp_size,
                                   group_by_length=config.group_by_length)
        loss_sum = 0.0
        for batch in batches:
            step = engine.train_step((collate(m) for m in rank_micro_batches(batch, config.micro_batch_size, state)),
                                     iteration)
            iteration += 1
            progress.count(len(batch), step.tokens)
            loss_sum += step.loss
            if iteration % config.log_interval == 0 or iteration == 1:
                progress.report({"epoch": epoch + 1, "iteration": iteration, "loss": step.loss, "lr": step.lr,
                                 "grad_norm": step.grad_norm}, iteration, _LOGGED)
        result.epoch_seconds.append(time.monotonic() - start)
        result.epoch_losses.append(loss_sum / max(1, len(batches)))
        score = evaluate()
        result.dev_scores.append(score)
        progress.scalars({"score": score}, epoch + 1, prefix="dev")
        log(f"epoch {epoch + 1}/{config.epochs}: dev score {score:.2f} ({result.epoch_seconds[-1]:.1f} s training)")
        if score > best:
            best, result.best_epoch = score, epoch + 1
            best_weights = {k: v.detach().clone() for k, v in engine.model.state_dict().items()}
    if best_weights is not None:
        engine.model.load_state_dict(best_weights)
    progress.close()
    return result


def steps_per_epoch(num_examples: int, config: FinetuneConfig, data_parallel_size: int) -> int:
    """Optimizer steps in one epoch (as `training_batches` cuts it), for the LR schedule."""
    lengths = [0] * num_examples
    return len(training_batches(lengths, config.global_batch(data_parallel_size), config.seed, 0,
                                drop_below=data_parallel_size))

