"""Access to the compiled kernels (`megabio._C`, built by setup.py) and the choice of path per call.

`MEGABIO_KERNELS=reference` forces the pure-PyTorch references everywhere; anything else (default
`auto`) uses a compiled kernel wherever the tensors fit its limits.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from types import ModuleType

import torch

_loaded: tuple[ModuleType | None, str] | None = None


def _load() -> tuple[ModuleType | None, str]:
    """(module, reason): the extension once imported, with its operators' fake (meta) kernels
    registered for torch.compile; or None and why not."""
    # Cached in a module global rather than functools.cache: torch.compile folds a global read into a
    # guarded constant, where it warns about every cache-wrapped function it traces through.
    global _loaded
    if _loaded is None:
        _loaded = _import_extension()
    return _loaded


def _import_extension() -> tuple[ModuleType | None, str]:
    try:
        module = importlib.import_module("megabio._C")
    except ImportError as error:
        return None, f"megabio._C is not built ({error}); reinstall with `pip install --no-build-isolation -e .`"
    _register_fakes()
    if not module.cpu_supported():
        return None, (f"megabio._C was built for {module.cpu_capability}, which this CPU lacks; rebuild here "
                      f"(or with MEGABIO_CPU_CAPABILITY=avx2 for a portable build)")
    return module, f"built ({module.cpu_capability})"


def _register_fakes() -> None:
    def fake(name):
        return torch.library.register_fake(f"megabio::{name}")

    fake("scaled_masked_softmax_forward")(lambda x, mask, scale: torch.empty_like(x))
    fake("scaled_masked_softmax_backward")(lambda grad, probs, scale: torch.empty_like(probs))
    fake("bias_gelu_forward")(lambda x, bias, tanh: torch.empty_like(x))
    fake("bias_gelu_backward")(lambda grad, x, bias, tanh: (torch.empty_like(x), torch.empty_like(bias)))
    fake("bias_gelu_forward_with_derivative")(lambda x, bias, tanh: (torch.empty_like(x), torch.empty_like(x)))
    fake("bias_gelu_backward_from_derivative")(lambda grad, derivative: (
        torch.empty_like(derivative), derivative.new_empty(derivative.shape[-1:])))

    def row_stats(x):  # one float32 (float64 for float64 x) per row of the last dim
        stat = torch.float64 if x.dtype == torch.float64 else torch.float32
        return x.new_empty(x.numel() // x.shape[-1], dtype=stat)

    fake("layer_norm_forward")(lambda x, weight, bias, eps: (
        torch.empty_like(x), row_stats(x), row_stats(x)))
    fake("layer_norm_backward")(lambda grad, x, mean, rstd, weight: (
        torch.empty_like(x), torch.empty_like(weight), torch.empty_like(weight)))
    fake("bias_dropout_add_forward")(lambda x, bias, residual, p: (
        torch.empty_like(x), x.new_empty(x.shape if p > 0 else (0,), dtype=torch.bool)))
    fake("bias_dropout_add_backward")(lambda grad, mask, p, bias_grad: (
        torch.empty_like(grad), grad.new_empty(grad.shape[-1:] if bias_grad else (0,))))

    fake("softmax_cross_entropy_statistics")(lambda logits, target: (
        row_stats(logits), row_stats(logits), row_stats(logits)))
    fake("softmax_cross_entropy_backward")(lambda logits, lse, target, grad: torch.empty_like(logits))


def match_dtype_under_autocast(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """`tensor` cast to `like`'s dtype when autocast is on for its device (where a parameter in fp32 meets
    a bf16/fp16 activation, as autocast itself would cast it inside a linear layer), else unchanged."""
    if tensor is None or tensor.dtype == like.dtype or not torch.is_autocast_enabled(like.device.type):
        return tensor
    return tensor.to(like.dtype)


def forced_reference() -> bool:
    return os.environ.get("MEGABIO_KERNELS", "auto").lower() == "reference"


def compiled_ops() -> object | None:
    """`torch.ops.megabio` when compiled kernels may be used for this call, else None."""
    if forced_reference() or _load()[0] is None:
        return None
    return torch.ops.megabio


def wide_cpu_vectors() -> bool:
    """Whether the CPU kernels were built for AVX-512 (16 floats a vector; AVX2 has 8)."""
    module = _load()[0]
    return module is not None and module.cpu_capability.startswith("avx512")


def supports_device(device: torch.device) -> bool:
    """Whether the compiled extension has kernels for tensors on `device`."""
    module = _load()[0]
    if module is None:
        return False
    return device.type == "cpu" or (device.type == "cuda" and bool(module.with_cuda))


@functools.cache
def apex_layer_norm() -> object | None:
    """apex's FusedLayerNormAffineFunction when apex is installed (used on GPU), else None."""
    if importlib.util.find_spec("apex") is None:
        return None
    try:
        from apex.normalization.fused_layer_norm import FusedLayerNormAffineFunction
    except ImportError:
        return None
    return FusedLayerNormAffineFunction


def status() -> dict[str, str]:
    """What each path resolves to on this machine (for logs and benchmarks)."""
    module, reason = _load()
    return {
        "mode": "reference (MEGABIO_KERNELS)" if forced_reference() else "auto",
        "cpu_kernels": reason,
        "cuda_kernels": "built" if module is not None and module.with_cuda else "not built",
        "apex": "installed" if apex_layer_norm() is not None else "not installed",
    }
