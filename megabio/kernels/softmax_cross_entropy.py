"""Per-row pieces of a softmax cross entropy over (a tensor-parallel shard of) the vocabulary.

`softmax_cross_entropy_statistics` gives each row's maximum, sum of exp(logit - maximum) and target logit;
the caller combines shards into log-sum-exp. `softmax_cross_entropy_gradient` gives
(softmax - one_hot(target)) * grad_loss. Logits `[rows, v]` of any float dtype (statistics in float32, or
float64 for float64 logits); target `[rows]` int64, a column of this shard or -1 for none. Dispatch: the C++
CPU kernel (one read of the logits per pass, no float copies of them), else the reference.
"""

from __future__ import annotations

import torch

from megabio.kernels import _extension

_KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _statistics_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def softmax_cross_entropy_statistics_reference(logits: torch.Tensor, target: torch.Tensor
                                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = logits.to(_statistics_dtype(logits))
    max = z.max(dim=-1).values
    sum_exp = (z - max.unsqueeze(-1)).exp().sum(dim=-1)
    target_logit = z.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(target < 0, 0.0)
    return max, sum_exp, target_logit


def softmax_cross_entropy_gradient_reference(logits: torch.Tensor, log_sum_exp: torch.Tensor,
                                             target: torch.Tensor, grad_loss: torch.Tensor) -> torch.Tensor:
    grad = (logits.to(log_sum_exp.dtype) - log_sum_exp.unsqueeze(-1)).exp()
    grad.scatter_add_(-1, target.clamp(min=0).unsqueeze(-1), -(target >= 0).to(grad.dtype).unsqueeze(-1))
    grad.mul_(grad_loss.unsqueeze(-1))
    return grad.masked_fill_((grad_loss == 0).unsqueeze(-1), 0.0).to(logits.dtype)


def _kernel_fits(logits: torch.Tensor) -> bool:
    return (_extension.compiled_ops() is not None and logits.device.type == "cpu"
            and _extension.supports_device(logits.device) and logits.dim() == 2 and logits.shape[1] > 0
            and logits.dtype in _KERNEL_DTYPES)


def softmax_cross_entropy_statistics(logits: torch.Tensor, target: torch.Tensor
                                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(maximum, sum of exp(logit - maximum), logit at target or 0), each `[rows]`, of logits `[rows, v]`."""
    if _kernel_fits(logits):
        return torch.ops.megabio.softmax_cross_entropy_statistics(logits, target)
    return softmax_cross_entropy_statistics_reference(logits, target)


def softmax_cross_entropy_gradient(logits: torch.Tensor, log_sum_exp: torch.Tensor, target: torch.Tensor,
                                   grad_loss: torch.Tensor) -> torch.Tensor:
    """(exp(logits - log_sum_exp) - one_hot(target)) * grad_loss per row, in logits' dtype; rows whose
    grad_loss is 0 are 0. log_sum_exp and grad_loss `[rows]` in the statistics' dtype."""
    if _kernel_fits(logits):
        return torch.ops.megabio.softmax_cross_entropy_backward(logits, log_sum_exp, target, grad_loss)
    return softmax_cross_entropy_gradient_reference(logits, log_sum_exp, target, grad_loss)
