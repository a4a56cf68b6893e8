"""Global gradient norm over a tensor-parallel model, and the fp16 dynamic loss scaler."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from megabio.parallel import ParallelState, distributed
from megabio.parallel.sharding import is_tensor_parallel


def global_grad_norm(model: nn.Module, state: ParallelState) -> torch.Tensor:
    """L2 norm of all gradients as one model: TP-sharded gradients summed over the TP group, replicated
    ones counted once (they are equal on every TP rank after finalize_model_grads). DP ranks agree."""
    device = next(model.parameters()).device
    sharded = torch.zeros((), dtype=torch.float64, device=device)
    replicated = torch.zeros((), dtype=torch.float64, device=device)
    for param in model.parameters():
        if param.grad is None:
            continue
        squared = param.grad.detach().double().pow(2).sum()
        if is_tensor_parallel(param):
            sharded += squared
        else:
            replicated += squared
    if state.tp_size > 1:
        dist.all_reduce(sharded, group=state.tp_group)
    return (sharded + replicated).sqrt()


def clip_gradients(model: nn.Module, total_norm: torch.Tensor, max_norm: float) -> None:
    if max_norm > 0 and total_norm > max_norm:
        scale = max_norm / (float(total_norm) + 1e-6)
        for param in model.parameters():
            if param.grad is not None:
                param.grad.mul_(scale)


class DynamicLossScaler:
    """Megatron's dynamic loss scale: halve and skip the step on inf/nan gradients (on any rank), double
    after `window` clean steps."""

    def __init__(self, initial_scale: float, window: int = 1000, min_scale: float = 1.0) -> None:
        self.scale, self.window, self.min_scale = initial_scale, window, min_scale
        self.clean_steps = 0

    def found_overflow(self, model: nn.Module) -> bool:
        """Whether any gradient anywhere is not finite (all-reduced, so every rank decides alike)."""
        flag = torch.zeros((), device=next(model.parameters()).device)
        for param in model.parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                flag.fill_(1.0)
                break
        if distributed():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def update(self, overflow: bool) -> None:
        if overflow:
            self.scale = max(self.min_scale, self.scale / 2)
            self.clean_steps = 0
        else:
            self.clean_steps += 1
            if self.clean_steps % self.window == 0:
                self.scale *= 2

    def state_dict(self) -> dict:
        return {"scale": self.scale, "clean_steps": self.clean_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.clean_steps = float(state["scale"]), int(state["clean_steps"])
