"""Cross entropy over logits whose vocabulary dim is split over TP, without gathering the logits.

loss = log(sum_v exp(z_v)) - z_target. Each rank computes its shard's maximum m_r and s_r = sum exp(z - m_r)
(`megabio.kernels.softmax_cross_entropy`); two all-reduces over TP give the global maximum M and then
sum_r s_r exp(m_r - M) together with the target logit (only the rank owning the target contributes).
The backward on each shard is softmax - one_hot(target), recomputed from the saved logits and log-sum-exp
(no softmax-sized tensor is kept between forward and backward).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megabio.kernels.softmax_cross_entropy import (
    softmax_cross_entropy_gradient,
    softmax_cross_entropy_statistics,
)
from megabio.parallel.state import ParallelState


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, state, ignore_index):
        vocab_per_rank = logits.shape[-1]
        rows = logits.reshape(-1, vocab_per_rank)
        ignored = (target == ignore_index).flatten()
        local_target = target.flatten() - state.tp_rank * vocab_per_rank
        outside = (local_target < 0) | (local_target >= vocab_per_rank) | ignored
        local_target = local_target.masked_fill(outside, -1)  # -1: not a column of this shard

        local_max, sum_exp, target_logit = softmax_cross_entropy_statistics(rows, local_target)
        if state.tp_size > 1:
            global_max = local_max.clone()
            dist.all_reduce(global_max, op=dist.ReduceOp.MAX, group=state.tp_group)
            sums = torch.stack([sum_exp * (local_max - global_max).exp(), target_logit])
            dist.all_reduce(sums, group=state.tp_group)
            sum_exp, target_logit = sums.unbind(0)
        else:
            global_max = local_max
        log_sum_exp = global_max + sum_exp.log()
        loss = (log_sum_exp - target_logit).masked_fill(ignored, 0.0)
        ctx.save_for_backward(rows, log_sum_exp, local_target, ignored)
        ctx.logits_shape = logits.shape
        return loss.view(target.shape)

    @staticmethod
    def backward(ctx, grad_loss):
        rows, log_sum_exp, local_target, ignored = ctx.saved_tensors
        grad_loss = grad_loss.flatten().to(log_sum_exp.dtype).masked_fill(ignored, 0.0)
        grad = softmax_cross_entropy_gradient(rows, log_sum_exp, local_target, grad_loss)
        return grad.view(ctx.logits_shape), None, None, None


def vocab_parallel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, state: ParallelState, ignore_index: int = -100
) -> torch.Tensor:
    """Per-token cross entropy (at least float32, 0 where target == ignore_index) of vocab-sharded logits.

    logits: `[..., vocab / tp]`, this rank's shard; target: `[...]`, global vocabulary ids.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    return _VocabParallelCrossEntropy.apply(logits, target, state, ignore_index)
