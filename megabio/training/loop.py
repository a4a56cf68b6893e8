"""The pretraining loop: micro-batch forward/backward with gradient accumulation, gradient reductions,
clipping, AdamW, LR schedule, mixed precision, checkpoints, logging. Reads like nanoGPT's loop."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from megabio.config import ConfigError, ModelConfig
from megabio.cpu_allocator import tcmalloc_hint
from megabio.model import IGNORE_INDEX, BertForPretraining
from megabio.parallel import ParallelState, finalize_model_grads
from megabio.training.checkpointing import load_checkpoint, save_checkpoint
from megabio.training.config import TrainConfig
from megabio.training.grads import DynamicLossScaler, clip_gradients, global_grad_norm
from megabio.training.optimizer import build_optimizer, load_optimizer_state_by_name, optimizer_state_by_name
from megabio.training.schedule import learning_rate


@dataclass
class StopFlag:
    """Set (e.g. by a SIGTERM handler) to finish the current step, save and stop."""

    requested: bool = False


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    iteration: int = 0
    stopped_early: bool = False


def micro_batches(consumed_samples: int, config: TrainConfig, state: ParallelState, size: int) -> list[list[int]]:
    """This DP rank's micro-batches of the global batch starting at `consumed_samples` (wrapping the data)."""
    per_rank = config.global_batch_size // state.dp_size
    first = consumed_samples + state.dp_rank * per_rank
    indices = [(first + i) % size for i in range(per_rank)]
    return [indices[i: i + config.micro_batch_size] for i in range(0, per_rank, config.micro_batch_size)]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def training_device() -> torch.device:
    """This process's GPU (torchrun's LOCAL_RANK) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _rng_states(model: BertForPretraining, device: torch.device) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "tracker": model.bert.rng_tracker.get_states()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(model: BertForPretraining, states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    model.bert.rng_tracker.set_states(states["tracker"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


_SHAPE_FIELDS = ("vocab_size", "num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size",
                 "max_position_embeddings", "type_vocab_size", "layernorm_order", "binary_head")


def _check_same_model(saved: dict[str, Any], model_config: ModelConfig, source: str) -> None:
    """A checkpoint of another shape or vocabulary cannot be resumed: say which field differs."""
    for name in _SHAPE_FIELDS:
        if saved.get(name) != getattr(model_config, name):
            hint = " (was the data preprocessed with another --vocab-file?)" if name == "vocab_size" else ""
            raise ConfigError(f"{source}: the checkpoint has {name}={saved.get(name)!r}, this run "
                              f"{getattr(model_config, name)!r}{hint}")


def _scheduler_state(iteration: int, config: TrainConfig) -> dict[str, Any]:
    return {"num_steps": iteration, "lr": config.lr, "min_lr": config.min_lr, "train_iters": config.train_iters,
            "lr_warmup_fraction": config.lr_warmup_fraction, "lr_decay_style": config.lr_decay_style}


def _mean_over_data_parallel(value: torch.Tensor, state: ParallelState) -> float:
    if state.dp_size > 1:
        value = value.clone()
        dist.all_reduce(value, group=state.dp_group)
        value /= state.dp_size
    return float(value)


def _stop_requested(flag: StopFlag, device: torch.device) -> bool:
    """Whether any rank was asked to stop (all ranks must agree, or collectives would hang)."""
    value = torch.tensor(float(flag.requested), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)


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
    num_micro = config.num_micro_batches(state.dp_size)
    device = training_device()
    if device.type == "cpu" and (hint := tcmalloc_hint()):
        log(hint)
    torch.manual_seed(config.seed)
    model = BertForPretraining(model_config, state)
    if initial_weights is not None:
        # A general-domain checkpoint may lack the binary head (or carry one this run drops).
        fresh, unused = model.load_state_dict(initial_weights, strict=False)
    model.to(device).train()
    optimizer = build_optimizer(model, config, state)
    scaler = DynamicLossScaler(config.initial_loss_scale, config.loss_scale_window) if config.precision == "fp16" \
        else None
    iteration = consumed = skipped = 0
    payload = load_checkpoint(config.load, state) if config.load else None
    if payload is not None:
        _check_same_model(payload["config"], model_config, config.load)
        iteration, consumed, skipped = payload["iteration"], payload["consumed_samples"], payload["skipped_steps"]
        model.load_state_dict(payload["model"])
        load_optimizer_state_by_name(model, optimizer, payload["optimizer"], config.load)
        if scaler is not None and payload["loss_scaler"] is not None:
            scaler.load_state_dict(payload["loss_scaler"])
        if "rng" in payload:
            _set_rng_states(model, payload["rng"], device)
        else:
            log(f"{config.load} carries no RNG states (resharded?): dropout streams start afresh")
        log(f"resumed from {config.load} at iteration {iteration} ({consumed} samples consumed)")
    elif initial_weights is not None:
        log(f"initialised from {config.init_from}" + (f"; freshly initialised: {', '.join(fresh)}" if fresh else "")
            + (f"; unused: {', '.join(unused)}" if unused else ""))
    writer = _tensorboard(config, state)
    result = TrainResult(iteration=iteration)
    window_start, window_tokens, window_samples = time.monotonic(), 0, 0

    def save(at: int) -> None:
        optimizer_state = optimizer_state_by_name(model, optimizer)  # collective under ZeRO
        save_checkpoint(config.save, at, state, {
            "model": model.state_dict(), "optimizer": optimizer_state, "scheduler": _scheduler_state(at, config),
            "loss_scaler": scaler.state_dict() if scaler else None, "consumed_samples": consumed,
            "skipped_steps": skipped, "config": model_config.to_dict(), "train_config": config.to_dict(),
            "rng": _rng_states(model, device)})
        log(f"saved checkpoint at iteration {at} to {config.save}")

    while iteration < config.train_iters:
        lr = learning_rate(iteration, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        binary_sum = torch.zeros((), device=device)
        for indices in micro_batches(consumed, config, state, len(dataset)):
            batch = {k: v.to(device, non_blocking=True) for k, v in collate([dataset[i] for i in indices]).items()}
            with _autocast(config.precision, device):
                loss, _, binary_logits = model(**batch, logits_at_labels_only=True)
            ((loss / num_micro) * (scaler.scale if scaler else 1.0)).backward()
            loss_sum += loss.detach().float() / num_micro
            if binary_logits is not None:  # logged apart from the MLM loss, as Megatron does
                binary_sum += F.cross_entropy(binary_logits.detach().float(), batch["binary_labels"],
                                              ignore_index=IGNORE_INDEX) / num_micro
            window_tokens += int(batch["attention_mask"].sum()) * state.dp_size
        finalize_model_grads(model, state)
        if after_backward is not None:
            after_backward(model, iteration)
        overflow = scaler.found_overflow(model) if scaler else False
        grad_norm = float("nan")
        if not overflow:
            if scaler:
                for param in model.parameters():
                    if param.grad is not None:
                        param.grad.div_(scaler.scale)
            norm = global_grad_norm(model, state)
            grad_norm = float(norm)
            clip_gradients(model, norm, config.clip_grad)
            optimizer.step()
        else:
            skipped += 1
        if scaler:
            scaler.update(overflow)
        consumed += config.global_batch_size
        iteration += 1
        window_samples += config.global_batch_size
        loss_value = _mean_over_data_parallel(loss_sum, state)
        binary_value = _mean_over_data_parallel(binary_sum, state)
        record = {"iteration": iteration, "loss": loss_value, "mlm_loss": loss_value - binary_value,
                  "binary_loss": binary_value, "lr": lr,
                  "grad_norm": grad_norm, "loss_scale": scaler.scale if scaler else 1.0, "skipped": skipped}
        result.history.append(record)
        if iteration % config.log_interval == 0 or iteration in (1, config.train_iters):
            elapsed = time.monotonic() - window_start
            record["peak_memory_mib"] = _max_over_ranks(peak_memory_bytes(device), device) / 2**20
            record["samples_per_second"] = window_samples / elapsed
            record["tokens_per_second"] = window_tokens / elapsed
            _log_step(record, model_config, log, writer, state)
            window_start, window_tokens, window_samples = time.monotonic(), 0, 0
        stopping = _stop_requested(stop, device)
        if config.save and ((config.save_interval and iteration % config.save_interval == 0)
                            or stopping or iteration == config.train_iters):
            save(iteration)
        if stopping:
            log(f"stop requested: saved iteration {iteration}, exiting")
            result.stopped_early = True
            break
    result.iteration = iteration
    if writer is not None:
        writer.close()
    return result


def peak_memory_bytes(device: torch.device) -> int:
    """This process's peak memory: allocated tensor memory on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _max_over_ranks(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def _tensorboard(config: TrainConfig, state: ParallelState):
    if not config.tensorboard_dir or state.tp_rank != 0 or state.dp_rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(config.tensorboard_dir)


def _log_step(record: dict[str, Any], model_config: ModelConfig, log: Callable[[str], None], writer,
              state: ParallelState) -> None:
    # Model FLOPs per token: 6 x transformer parameters (forward + backward), the usual estimate.
    params = 12 * model_config.num_layers * model_config.hidden_size ** 2
    record["model_tflops"] = 6 * params * record["tokens_per_second"] / 1e12
    if state.tp_rank == 0 and state.dp_rank == 0:
        log(f"iteration {record['iteration']:6d} | loss {record['loss']:.4f} | mlm loss {record['mlm_loss']:.4f} | "
            f"binary loss {record['binary_loss']:.4f} | lr {record['lr']:.3e} | grad norm {record['grad_norm']:.3f} | "
            f"loss scale {record['loss_scale']:.0f} | skipped {record['skipped']} | "
            f"samples/s {record['samples_per_second']:,.1f} | tokens/s {record['tokens_per_second']:,.0f} | "
            f"model TFLOP/s {record['model_tflops']:.3f} | peak memory/rank {record['peak_memory_mib']:,.0f} MiB")
    if writer is not None:
        for key in ("loss", "mlm_loss", "binary_loss", "lr", "grad_norm", "loss_scale", "skipped",
                    "samples_per_second", "tokens_per_second", "model_tflops", "peak_memory_mib"):
            writer.add_scalar(f"train/{key}", record[key], record["iteration"])
