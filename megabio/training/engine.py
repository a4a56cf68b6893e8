"""The training engine every recipe shares: one optimizer step over micro-batches (gradient accumulation,
mixed precision, TP/SP/DP gradient finalisation, fp16 overflow skipping, clipping, AdamW, LR schedule), an
evaluation pass, and the model / optimizer / scaler / RNG state a checkpoint carries.

A recipe supplies the model and a `Task` (how a micro-batch becomes a loss); BERT pretraining is one task,
NER, RE and QA fine-tuning are others. The loops (by iteration for pretraining, by epoch for fine-tuning)
live with the recipes and call `train_step` and `evaluate`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from megabio.parallel import ParallelState, distributed, finalize_model_grads
from megabio.training.config import TrainConfig
from megabio.training.grads import DynamicLossScaler, clip_gradients, global_grad_norm
from megabio.training.optimizer import build_optimizer, load_optimizer_state_by_name, optimizer_state_by_name
from megabio.training.schedule import learning_rate

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    """How a micro-batch becomes a loss. `loss` returns the micro-batch's mean loss and named, detached
    values to log beside it (each a mean over the micro-batch, like the loss)."""

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@dataclass
class StepResult:
    """What one optimizer step did, averaged over data-parallel ranks."""

    loss: float
    extras: dict[str, float]
    lr: float
    grad_norm: float
    """NaN on a skipped (overflow) step."""
    tokens: int
    """Real (unpadded) tokens over all data-parallel ranks, for throughput."""


def training_device() -> torch.device:
    """This process's GPU (torchrun's LOCAL_RANK) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16 / fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def slow_precision_note(precision: str, device: torch.device) -> str | None:
    """Why `precision` trains slower than fp32 here, if it does: half precision on a CPU without native
    arithmetic for it (bf16: AVX512-BF16 or AMX; fp16: AVX512-FP16 or AMX-FP16), where every matmul then
    converts its operands in software."""
    if device.type != "cpu" or precision == "fp32":
        return None
    try:
        native = (torch.ops.mkldnn._is_mkldnn_bf16_supported() if precision == "bf16"
                  else torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the probe: no claim either way
        return None
    if native:
        return None
    return (f"--{precision}: this CPU has no native {precision} arithmetic, so its matmuls take a slow software "
            f"path (an order of magnitude slower than fp32, the default); use fp32 here")


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def mean_over_data_parallel(value: torch.Tensor, state: ParallelState) -> float:
    if state.dp_size > 1:
        value = value.clone()
        dist.all_reduce(value, group=state.dp_group)
        value /= state.dp_size
    return float(value)


class Engine:
    """A model, its optimizer and loss scaler, and the step that trains them.

    `train_iters` sets the LR schedule's length (warmup fraction and decay are over it); the model must be
    on `device` already. The caller seeds torch before building the model (weights and dropout follow it).
    """

    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, state: ParallelState,
                 device: torch.device) -> None:
        self.model, self.task, self.config, self.state, self.device = model, task, config, state, device
        self.optimizer = build_optimizer(model, config, state)
        self.scaler = (DynamicLossScaler(config.initial_loss_scale, config.loss_scale_window)
                       if config.precision == "fp16" else None)
        self.skipped_steps = 0

    def train_step(self, micro_batches: Iterable[Batch], iteration: int,
                   after_backward: Callable[[nn.Module, int], None] | None = None) -> StepResult:
        """One optimizer step (0-based `iteration`, for the LR) over this DP rank's micro-batches, each
        weighted equally. `after_backward(model, iteration)` runs once the gradients are final."""
        model, scaler = self.model, self.scaler
        model.train()
        micro_batches = list(micro_batches)
        lr = learning_rate(iteration, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        extra_sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for batch in micro_batches:
            batch = to_device(batch, self.device)
            with autocast(self.config.precision, self.device):
                loss, extras = self.task.loss(model, batch)
            ((loss / len(micro_batches)) * (scaler.scale if scaler else 1.0)).backward()
            loss_sum += loss.detach().float() / len(micro_batches)
            for name, value in extras.items():
                extra_sums[name] = extra_sums.get(name, torch.zeros((), device=self.device)) \
                    + value.detach().float() / len(micro_batches)
            if "attention_mask" in batch:
                tokens += int(batch["attention_mask"].sum()) * self.state.dp_size
        finalize_model_grads(model, self.state)
        if after_backward is not None:
            after_backward(model, iteration)
        overflow = scaler.found_overflow(model) if scaler else False
        grad_norm = float("nan")
        if overflow:
            self.skipped_steps += 1
        else:
            if scaler:
                for param in model.parameters():
                    if param.grad is not None:
                        param.grad.div_(scaler.scale)
            norm = global_grad_norm(model, self.state)
            grad_norm = float(norm)
            clip_gradients(model, norm, self.config.clip_grad)
            self.optimizer.step()
        if scaler:
            scaler.update(overflow)
        extras_mean = {name: mean_over_data_parallel(value, self.state) for name, value in extra_sums.items()}
        return StepResult(loss=mean_over_data_parallel(loss_sum, self.state), extras=extras_mean, lr=lr,
                          grad_norm=grad_norm, tokens=tokens)

    def rng_states(self) -> dict[str, Any]:
        states = {"torch": torch.get_rng_state(), "tracker": self.model.bert.rng_tracker.get_states()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def set_rng_states(self, states: dict[str, Any]) -> None:
        torch.set_rng_state(states["torch"])
        self.model.bert.rng_tracker.set_states(states["tracker"])
        if self.device.type == "cuda" and "cuda" in states:
            torch.cuda.set_rng_state(states["cuda"], self.device)

    def checkpoint_payload(self) -> dict[str, Any]:
        """Model, optimizer (keyed by name; collective under ZeRO), scaler and RNG states as plain data."""
        return {"model": self.model.state_dict(),
                "optimizer": optimizer_state_by_name(self.model, self.optimizer),
                "loss_scaler": self.scaler.state_dict() if self.scaler else None,
                "skipped_steps": self.skipped_steps, "rng": self.rng_states()}

    def load_checkpoint_payload(self, payload: dict[str, Any], source: str) -> bool:
        """Restore what `checkpoint_payload` saved; False when the payload carries no RNG states (resharded)."""
        self.model.load_state_dict(payload["model"])
        load_optimizer_state_by_name(self.model, self.optimizer, payload["optimizer"], source)
        if self.scaler is not None and payload.get("loss_scaler") is not None:
            self.scaler.load_state_dict(payload["loss_scaler"])
        self.skipped_steps = payload.get("skipped_steps", 0)
        if "rng" not in payload:
            return False
        self.set_rng_states(payload["rng"])
        return True


def evaluate(model: nn.Module, batches: Iterable[tuple[Any, Batch]], forward: Callable[[nn.Module, Batch], Any],
             device: torch.device, precision: str = "fp32") -> Iterator[tuple[Any, Any]]:
    """Yield (key, `forward(model, batch)`) for each (key, batch) in eval mode: no dropout, no gradients,
    the run's autocast. The model is left in eval mode; the train step sets train mode again."""
    model.eval()
    with torch.no_grad():
        for key, batch in batches:
            with autocast(precision, device):
                yield key, forward(model, to_device(batch, device))


def stop_requested(requested: bool, device: torch.device) -> bool:
    """Whether any rank was asked to stop (all ranks must agree, or collectives would hang)."""
    value = torch.tensor(float(requested), device=device)
    if distributed():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)
