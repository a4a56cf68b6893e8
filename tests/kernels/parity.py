"""Compare a kernel-dispatched op with its reference, forward and backward, on the same inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12),
             torch.bfloat16: dict(rtol=2e-2, atol=2e-2), torch.float16: dict(rtol=2e-3, atol=2e-3)}


def assert_parity(kernel: Callable, reference: Callable, inputs: Sequence[object], dtype: torch.dtype,
                  grad_inputs: Sequence[int], function: type) -> None:
    """Same outputs and the same gradients for the inputs at positions `grad_inputs`; the kernel side must
    really have run a compiled kernel (its autograd node comes from `function`)."""
    def prepared():
        return [t.detach().clone().requires_grad_(i in grad_inputs)
                if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                for i, t in enumerate(inputs)]

    ours, theirs = prepared(), prepared()
    out, expected = kernel(*ours), reference(*theirs)
    assert out.dtype == expected.dtype == dtype
    assert type(out.grad_fn).__name__ == f"{function.__name__}Backward", f"the kernel did not run: {out.grad_fn}"
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(upstream)
    expected.backward(upstream)
    for i in grad_inputs:
        scale = max(theirs[i].grad.abs().max().item(), 1.0)
        tol = TOLERANCE[dtype]
        torch.testing.assert_close(ours[i].grad, theirs[i].grad, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   msg=lambda m, i=i: f"gradient of input {i}: {m}")
