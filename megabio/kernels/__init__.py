"""Fused operations of the transformer layer, each with a pure-PyTorch reference.

The reference is the numerical oracle for every faster implementation and the fallback wherever one is
not available.
"""

from megabio.kernels.bias_dropout_add import bias_dropout_add, dropout
from megabio.kernels.bias_gelu import bias_gelu
from megabio.kernels.layer_norm import layer_norm
from megabio.kernels.scaled_masked_softmax import scaled_masked_softmax

__all__ = ["bias_dropout_add", "bias_gelu", "dropout", "layer_norm", "scaled_masked_softmax"]
