"""Cross entropy over logits whose vocabulary dim is split over TP, without gathering the logits.

loss = log(sum_v exp(z_v - m)) - (z_target - m), with m the global max. Three all-reduces over TP: the
max, the target logit (only the rank owning the target contributes) and the sum of exponentials.
Backward on each shard: softmax - one_hot(target).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megabio.parallel.state import ParallelState


def _all_reduce(x: torch.Tensor, state: ParallelState, op: dist.ReduceOp = dist.ReduceOp.SUM) -> None:
    if state.tp_size > 1:
        dist.all_reduce(x, op=op, group=state.tp_group)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, state, ignore_index):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # statistics in fp32 for half-precision activations
        vocab_per_rank = logits.shape[-1]
        start = state.tp_rank * vocab_per_rank

        logits_max = logits.max(dim=-1).values
        _all_reduce(logits_max, state, dist.ReduceOp.MAX)
        shifted = logits - logits_max.unsqueeze(-1)

        ignored = target == ignore_index
        local_target = target - start
        outside = (local_target < 0) | (local_target >= vocab_per_rank) | ignored
        local_target = local_target.masked_fill(outside, 0)
        target_logit = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        _all_reduce(target_logit, state)

        exp = shifted.exp()
        sum_exp = exp.sum(dim=-1)
        _all_reduce(sum_exp, state)

        loss = (sum_exp.log() - target_logit).masked_fill(ignored, 0.0)
        softmax = exp.div_(sum_exp.unsqueeze(-1))
        ctx.save_for_backward(softmax, local_target, outside, ignored)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        softmax, local_target, outside, ignored = ctx.saved_tensors
        grad = softmax  # reused in place: the saved softmax is not needed again
        one_hot = (~outside).to(grad.dtype).unsqueeze(-1)
        grad.scatter_add_(-1, local_target.unsqueeze(-1), -one_hot)
        grad.mul_(grad_loss.masked_fill(ignored, 0.0).unsqueeze(-1))
        return grad, None, None, None


def vocab_parallel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, state: ParallelState, ignore_index: int = -100
) -> torch.Tensor:
    """Per-token cross entropy (at least float32, 0 where target == ignore_index) of vocab-sharded logits.

    logits: `[..., vocab / tp]`, this rank's shard; target: `[...]`, global vocabulary ids.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    return _VocabParallelCrossEntropy.apply(logits, target, state, ignore_index)
