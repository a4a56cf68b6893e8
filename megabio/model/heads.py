"""Pretraining heads: the MLM head tied to the word embeddings, and the pooler + binary (SOP/NSP) head."""

from __future__ import annotations

import torch
from torch import nn

from megabio.config import ModelConfig
from megabio.kernels import bias_gelu
from megabio.kernels.linear import linear
from megabio.model.norm import LayerNorm
from megabio.model.row_selecting_linear import linear_with_selected_rows
from megabio.parallel.layers import InitMethod, VocabParallelEmbedding, normal_init
from megabio.parallel.mappings import copy_to_tensor_parallel_region
from megabio.parallel.sharding import mark_tensor_parallel
from megabio.parallel.state import ParallelState

# Added to the logits of padding rows, so they take no probability mass and are never predicted.
_PADDED_LOGIT = -1e30


def replicated_linear(in_features: int, out_features: int, init_method: InitMethod) -> nn.Linear:
    """An nn.Linear held in full on every rank: weight drawn with `init_method`, bias zero."""
    layer = nn.Linear(in_features, out_features)
    init_method(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class BertLMHead(nn.Module):
    """hidden `[b, s, h]` -> dense -> GeLU -> LayerNorm -> logits `[b, s, vocab / tp]` against the tied
    word embeddings, plus a vocab-parallel bias. Padding rows of the vocabulary get -1e30."""

    def __init__(self, config: ModelConfig, state: ParallelState, word_embeddings: VocabParallelEmbedding) -> None:
        super().__init__()
        self.config, self.state = config, state
        self.word_embeddings = [word_embeddings]  # a list, so the tied module is not registered twice
        self.dense = replicated_linear(config.hidden_size, config.hidden_size, normal_init(config.init_method_std))
        self.layernorm = LayerNorm(config.hidden_size, config.layernorm_epsilon)
        rows = word_embeddings.rows_per_partition
        self.bias = nn.Parameter(torch.zeros(rows))
        mark_tensor_parallel(self.bias, 0)
        row_ids = torch.arange(word_embeddings.vocab_start, word_embeddings.vocab_end)
        self.register_buffer("padding_offset", torch.where(row_ids >= config.vocab_size, _PADDED_LOGIT, 0.0),
                             persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits at every row of `hidden`."""
        return linear(*self._projection_operands(hidden))

    def with_rows(self, hidden: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at every row and, `[n, vocab / tp]`, at the rows where the bool mask `rows` is True. When
        only the latter reach the loss, the vocabulary projection's backward multiplies those rows alone
        (`linear_with_selected_rows`)."""
        return linear_with_selected_rows(*self._projection_operands(hidden), rows)

    def _projection_operands(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(transformed hidden states, the tied word embeddings, the bias with padding rows at -1e30)."""
        x = self.layernorm(bias_gelu(linear(hidden, self.dense.weight), self.dense.bias,
                                     self.config.gelu_approximate))
        x = copy_to_tensor_parallel_region(x, self.state)
        weight = self.word_embeddings[0].weight  # [vocab / tp, h]
        return x, weight, self.bias + self.padding_offset.to(self.bias.dtype)


class BinaryHead(nn.Module):
    """Pooler (dense + tanh on the first token) then Linear(h, 2): SOP or NSP logits `[b, 2]`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        init = normal_init(config.init_method_std)
        self.pooler = replicated_linear(config.hidden_size, config.hidden_size, init)
        self.classifier = replicated_linear(config.hidden_size, 2, init)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        """first_token: the encoder's output at each sample's first position, `[b, h]`."""
        pooled = torch.tanh(self.pooler(first_token))  # [b, h]
        return self.classifier(pooled)
