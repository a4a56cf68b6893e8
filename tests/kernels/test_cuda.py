"""Each CUDA kernel against the reference on a GPU (skipped where there is none)."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import _extension, bias_dropout_add, bias_gelu, dropout, layer_norm, scaled_masked_softmax
from megabio.kernels.bias_dropout_add import _BiasDropoutAdd, bias_dropout_add_reference
from megabio.kernels.bias_gelu import _BiasGelu, bias_gelu_reference
from megabio.kernels.layer_norm import _LayerNorm, layer_norm_reference
from megabio.kernels.scaled_masked_softmax import _ScaledMaskedSoftmax, scaled_masked_softmax_reference
from tests.kernels.parity import assert_parity

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    pytest.mark.usefixtures("compiled"),
]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def cuda_kernels_built():
    if not _extension.supports_device(torch.device("cuda")):
        pytest.skip("megabio._C was built without CUDA kernels")


def _randn(*shape, dtype, scale=1.0):
    return (torch.randn(*shape) * scale).to(device="cuda", dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sk", [7, 128, 513, 2048])
def test_softmax(dtype, sk):
    x = _randn(2, 4, 9, sk, dtype=dtype, scale=3)
    mask = torch.rand(2, 1, 1, sk, device="cuda") < 0.3
    mask[0] = True
    assert_parity(scaled_masked_softmax, scaled_masked_softmax_reference, [x, mask, 0.125], dtype, [0],
                  _ScaledMaskedSoftmax)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bias_gelu(dtype, approximate):
    assert_parity(bias_gelu, bias_gelu_reference, [_randn(33, 1024, dtype=dtype), _randn(1024, dtype=dtype),
                                                   approximate], dtype, [0, 1], _BiasGelu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm(dtype):
    width = 1024
    assert_parity(layer_norm, layer_norm_reference,
                  [_randn(65, width, dtype=dtype), _randn(width, dtype=dtype), _randn(width, dtype=dtype), 1e-5],
                  dtype, [0, 1, 2], _LayerNorm)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_dropout_add(dtype):
    x, bias, residual = _randn(64, 257, dtype=dtype), _randn(257, dtype=dtype), _randn(64, 257, dtype=dtype)
    assert_parity(bias_dropout_add, bias_dropout_add_reference, [x, bias, residual, 0.1, False], dtype, [0, 1, 2],
                  _BiasDropoutAdd)
    ones = torch.ones(1000, 1000, device="cuda", dtype=dtype)
    torch.manual_seed(0)
    first = bias_dropout_add(ones, None, torch.zeros_like(ones), 0.3, True)
    torch.manual_seed(0)
    assert torch.equal(first, bias_dropout_add(ones, None, torch.zeros_like(ones), 0.3, True))
    assert abs((first != 0).float().mean().item() - 0.7) < 0.007


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_alone(dtype):
    ones = torch.ones(1000, 1000, device="cuda", dtype=dtype)
    torch.manual_seed(0)
    out = dropout(ones, 0.3, True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.007
    torch.testing.assert_close(out[kept].float(), torch.full_like(out[kept].float(), 1 / 0.7), rtol=1e-2, atol=1e-2)
