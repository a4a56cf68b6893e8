"""BERT pretraining on the engine: the MLM + SOP/NSP task, and the iteration loop with resume, periodic
checkpoints, SIGTERM handling and logging. Reads like nanoGPT's loop; the step itself is `Engine.train_step`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from megabio.checkpoint import load_checkpoint, save_checkpoint
from megabio.config import IGNORE_INDEX, ConfigError, ModelConfig
from megabio.cpu_allocator import tcmalloc_hint
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState
from megabio.training.config import TrainConfig
from megabio.training.engine import Batch, Engine, slow_precision_note, stop_requested, training_device
from megabio.training.progress import ProgressLog


@dataclass
class StopFlag:
    """Set (e.g. by a SIGTERM handler) to finish the current step, save and stop."""

    requested: bool = False


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    iteration: int = 0
    stopped_early: bool = False


class BertPretrainingTask:
    """MLM (+ SOP/NSP) loss; the binary loss is logged apart from the MLM loss, as Megatron does."""

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, _, binary_logits = model(**batch, logits_at_labels_only=True)
        binary = torch.zeros((), device=loss.device)
        if binary_logits is not None:
            binary = F.cross_entropy(binary_logits.detach().float(), batch["binary_labels"],
                                     ignore_index=IGNORE_INDEX)
        return loss, {"binary_loss": binary}


def micro_batches(consumed_samples: int, config: TrainConfig, state: ParallelState, size: int) -> list[list[int]]:
    """This DP rank's micro-batches of the global batch starting at `consumed_samples` (wrapping the data)."""
    per_rank = config.global_batch_size // state.dp_size
    first = consumed_samples + state.dp_rank * per_rank
    indices = [(first + i) % size for i in range(per_rank)]
    return [indices[i: i + config.micro_batch_size] for i in range(0, per_rank, config.micro_batch_size)]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


_SHAPE_FIELDS = ("vocab_size", "num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size",
                 "max_position_embeddings", "type_vocab_size", "layernorm_order", "binary_head")


def _check_same_model(saved: dict[str, Any], model_config: ModelConfig, source: str) -> None:
    """A checkpoint of another shape or vocabulary cannot be resumed: say which field differs."""
    for name in _SHAPE_FIELDS:
        if saved.get(name) != getattr(model_config, name):
            hint = " (was the data preprocessed with another --vocab-file?)" if name == "vocab_size" else ""
            raise ConfigError(f"{source}: the checkpoint has {name}={saved.get(name)!r}, this run "
                              f"{getattr(model_config, name)!r}{hint}")


_LOGGED = [("iteration", "iteration"), ("loss", "loss"), ("mlm_loss", "mlm loss"), ("binary_loss", "binary loss"),
           ("lr", "lr"), ("grad_norm", "grad norm"), ("loss_scale", "loss scale"), ("skipped", "skipped")]


def pretrain(model_config: ModelConfig, config: TrainConfig, dataset, state: ParallelState,
             log: Callable[[str], None] = print, stop: StopFlag | None = None,
             after_backward: Callable[[torch.nn.Module, int], None] | None = None,
             initial_weights: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train `model_config` on `dataset` (BertDataset-like: index -> dict of tensors) for config.train_iters.

    `initial_weights` (this TP rank's shard, e.g. of a general-domain checkpoint) start the run unless
    `config.load` holds a checkpoint to resume. `after_backward(model, iteration)` runs after the gradients
    are final (tests inject overflows there).
    """
    stop = stop or StopFlag()
    config.num_micro_batches(state.dp_size)
    device = training_device()
    if device.type == "cpu" and (hint := tcmalloc_hint()):
        log(hint)
    torch.manual_seed(config.seed)
    model = BertForPretraining(model_config, state)
    if initial_weights is not None:
        # A general-domain checkpoint may lack the binary head (or carry one this run drops).
        fresh, unused = model.load_state_dict(initial_weights, strict=False)
    model.to(device).train()
    engine = Engine(model, BertPretrainingTask(), config, state, device)
    iteration = consumed = 0
    payload = load_checkpoint(config.load, state) if config.load else None
    if payload is not None:
        _check_same_model(payload["config"], model_config, config.load)
        iteration, consumed = payload["iteration"], payload["consumed_samples"]
        if not engine.load_checkpoint_payload(payload, config.load):
            log(f"{config.load} carries no RNG states (resharded?): dropout streams start afresh")
        log(f"resumed from {config.load} at iteration {iteration} ({consumed} samples consumed)")
    elif initial_weights is not None:
        log(f"initialised from {config.init_from}" + (f"; freshly initialised: {', '.join(fresh)}" if fresh else "")
            + (f"; unused: {', '.join(unused)}" if unused else ""))
    if note := slow_precision_note(config.precision, device):
        log(note)
    progress = ProgressLog(model_config, state, device, log, config.tensorboard_dir)
    result = TrainResult(iteration=iteration)

    def save(at: int) -> None:
        save_checkpoint(config.save, at, state, {**engine.checkpoint_payload(), "consumed_samples": consumed,
                                                 "config": model_config.to_dict()})
        log(f"saved checkpoint at iteration {at} to {config.save}")

    while iteration < config.train_iters:
        batches = (collate([dataset[i] for i in indices])
                   for indices in micro_batches(consumed, config, state, len(dataset)))
        step = engine.train_step(batches, iteration, after_backward)
        consumed += config.global_batch_size
        iteration += 1
        progress.count(config.global_batch_size, step.tokens)
        binary = step.extras["binary_loss"]
        record = {"iteration": iteration, "loss": step.loss, "mlm_loss": step.loss - binary, "binary_loss": binary,
                  "lr": step.lr, "grad_norm": step.grad_norm,
                  "loss_scale": engine.scaler.scale if engine.scaler else 1.0, "skipped": engine.skipped_steps}
        result.history.append(record)
        if iteration % config.log_interval == 0 or iteration in (1, config.train_iters):
            progress.report(record, iteration, _LOGGED)
        stopping = stop_requested(stop.requested, device)
        if config.save and ((config.save_interval and iteration % config.save_interval == 0)
                            or stopping or iteration == config.train_iters):
            save(iteration)
        if stopping:
            log(f"stop requested: saved iteration {iteration}, exiting")
            result.stopped_early = True
            break
    result.iteration = iteration
    progress.close()
    return result
