"""A linear layer that also returns chosen rows of its output, with a backward that multiplies only those
rows when nothing else of the output reaches the loss.

The dense MLM head computes logits at every position, but the loss reads only the ~15% labelled ones.
Indexing the full logits would make autograd build a zero gradient for the other rows (a fill and a
scatter over `[tokens, vocab]`) and then multiply all of them in the linear's backward: at a 30k vocabulary
that is most of the head's backward work. Here the selection is part of the layer, so when only the
selected rows carry a gradient the backward multiplies those alone, with the same gradients. When the full
output is used too, its gradient and the selected rows' are added and the backward is the ordinary one.
"""

from __future__ import annotations

import torch

from megabio.kernels.linear import linear


class _RowSelectingLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, index):
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None: nothing to add or multiply
        ctx.save_for_backward(x, weight, index)
        ctx.has_bias = bias is not None
        out = linear(x, weight, bias)
        return out, out.reshape(-1, out.shape[-1]).index_select(0, index)

    @staticmethod
    def backward(ctx, grad_out, grad_selected):
        x, weight, index = ctx.saved_tensors
        inputs = x.reshape(-1, x.shape[-1])
        if grad_out is None:  # only the selected rows reach the loss: multiply them alone
            if grad_selected is None:
                return None, None, None, None
            grad_rows, inputs = grad_selected, inputs.index_select(0, index)
        else:
            grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
            if grad_selected is not None:
                grad_rows = grad_rows.index_add(0, index, grad_selected)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = linear(grad_rows, weight.t())
            if grad_out is None:
                grad_x = grad_x.new_zeros(x.numel() // x.shape[-1], x.shape[-1]).index_copy_(0, index, grad_x)
            grad_x = grad_x.reshape(x.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_rows.t() @ inputs
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_weight, grad_bias, None


def linear_with_selected_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`F.linear(x, weight, bias)` (autocast included) and its rows where the bool mask `rows` (x's leading
    dims) is True, `[n, out]` in row-major order, as `out[rows]` gives them."""
    if rows.shape != x.shape[:-1]:
        raise ValueError(f"rows {tuple(rows.shape)} do not match the leading dims of x {tuple(x.shape)}")
    device = x.device.type
    if torch.is_autocast_enabled(device):
        # Cast as autocast would for a linear (float64 stays), outside the Function so that the casts'
        # own backward hands fp32 gradients to fp32 parameters.
        dtype = torch.get_autocast_dtype(device)
        x, weight, bias = (t if t is None or t.dtype == torch.float64 else t.to(dtype) for t in (x, weight, bias))
    index = rows.flatten().nonzero().squeeze(1)
    with torch.autocast(device, enabled=False):
        return _RowSelectingLinear.apply(x, weight, bias, index)
