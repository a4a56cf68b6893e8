"""gelu(x + bias), exact (erf) or tanh-approximated: the approximation is always an explicit choice.

Dispatch: CUDA or C++ CPU kernel (forward, and backward with the bias gradient fused), else the reference.
On CPU where GeLU is bound by arithmetic (half precision; float32 on CPUs without AVX-512, whose vectors
hold half as many floats), the forward also writes gelu'(x + bias) from the same exponential and saves it
in place of x (the same memory), so the backward only multiplies; the saved derivative is rounded once to
the storage type, like x itself is when x is saved instead. In float32 with AVX-512 the extra 4-byte write
costs more than the exponential it saves, and on GPU memory bounds GeLU: there the backward recomputes
gelu' from x, as Megatron's does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megabio.kernels import _extension

_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
                  "cuda": (torch.float32, torch.bfloat16, torch.float16)}


def bias_gelu_reference(x: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """Pure-PyTorch reference."""
    return F.gelu(x if bias is None else x + bias, approximate=approximate)


def _saves_derivative(x: torch.Tensor) -> bool:
    """Whether the training forward saves gelu' instead of the backward recomputing it (see above)."""
    return x.device.type == "cpu" and (x.element_size() == 2
                                       or (x.dtype == torch.float32 and not _extension.wide_cpu_vectors()))


class _BiasGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, tanh):
        ctx.tanh = tanh
        ctx.saved_derivative = _saves_derivative(x) and any(ctx.needs_input_grad[:2])
        if ctx.saved_derivative:
            out, derivative = torch.ops.megabio.bias_gelu_forward_with_derivative(x, bias, tanh)
            ctx.save_for_backward(derivative)
            return out
        ctx.save_for_backward(x, bias)
        return torch.ops.megabio.bias_gelu_forward(x, bias, tanh)

    @staticmethod
    def backward(ctx, grad):
        if ctx.saved_derivative:
            grad_x, grad_bias = torch.ops.megabio.bias_gelu_backward_from_derivative(grad.contiguous(),
                                                                                    *ctx.saved_tensors)
        else:
            grad_x, grad_bias = torch.ops.megabio.bias_gelu_backward(grad.contiguous(), *ctx.saved_tensors,
                                                                     ctx.tanh)
        return grad_x, grad_bias, None


def _kernel_fits(x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (bias is not None and _extension.compiled_ops() is not None
            and _extension.supports_device(x.device)
            and x.dtype in _KERNEL_DTYPES.get(x.device.type, ()) and bias.dtype == x.dtype
            and bias.device == x.device and bias.dim() == 1 and x.dim() >= 1 and bias.shape[0] == x.shape[-1])


def bias_gelu(x: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """gelu(x + bias) with bias broadcast over the last dim."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate={approximate!r} must be 'none' (erf) or 'tanh'")
    cast_bias = _extension.match_dtype_under_autocast(bias, x)
    if _kernel_fits(x, cast_bias):
        return _BiasGelu.apply(x, cast_bias, approximate == "tanh")
    return bias_gelu_reference(x, bias, approximate)
