"""A linear layer whose backward runs its matmuls only on the output rows that receive a gradient.

The MLM head computes logits at every position, but the loss reads only the ~15% labelled ones, so the
gradient of the other rows is exactly zero. Autograd's linear backward would still multiply all of them:
at a 30k vocabulary that is most of the head's backward work. Here the backward finds the rows with a
non-zero gradient (one pass over it) and multiplies those alone; the gradients are the same (zero rows
add nothing), and when every row carries a gradient it is the ordinary backward. Counting the rows
waits for the device once per backward, a small price next to the multiplications it saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _RowSparseGradLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])
        inputs = x.reshape(-1, x.shape[-1])
        # The L1 norm is a vectorised reduction with no temporary; it is 0 only for an all-zero row
        # (a NaN row compares unequal to 0 and is kept).
        rows = (torch.linalg.vector_norm(grad_rows, 1, dim=1) != 0).nonzero().squeeze(1)
        sparse = rows.numel() < grad_rows.shape[0]
        if sparse:
            grad_rows, inputs = grad_rows.index_select(0, rows), inputs.index_select(0, rows)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_rows @ weight
            if sparse:
                grad_x = grad_x.new_zeros(x.numel() // x.shape[-1], x.shape[-1]).index_copy_(0, rows, grad_x)
            grad_x = grad_x.reshape(x.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_rows.t() @ inputs
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_weight, grad_bias


def row_sparse_grad_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, autocast included, with a backward that skips all-zero gradient rows."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        # Cast as autocast would for a linear (float64 stays), outside the Function so that the casts'
        # own backward hands fp32 gradients to fp32 parameters.
        dtype = torch.get_autocast_dtype(device)
        x, weight, bias = (t if t is None or t.dtype == torch.float64 else t.to(dtype) for t in (x, weight, bias))
    with torch.autocast(device, enabled=False):
        return _RowSparseGradLinear.apply(x, weight, bias)
