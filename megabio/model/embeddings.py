"""Word + position + token-type embeddings (Megatron BERT), with BERT's LayerNorm in post-LN mode."""

from __future__ import annotations

import torch
from torch import nn

from megabio.config import ModelConfig
from megabio.kernels import dropout
from megabio.model.norm import LayerNorm
from megabio.parallel.layers import VocabParallelEmbedding, normal_init
from megabio.parallel.mappings import scatter_to_sequence_parallel_region
from megabio.parallel.random import RNGStatesTracker
from megabio.parallel.state import ParallelState


class BertEmbeddings(nn.Module):
    """input ids `[b, s]` -> embeddings `[s, b, h]` (`[s / tp, b, h]` under sequence parallelism).

    The word embedding is vocab-parallel and doubles as the MLM output matrix; position and token-type
    embeddings are replicated.
    """

    def __init__(self, config: ModelConfig, state: ParallelState, rng_tracker: RNGStatesTracker) -> None:
        super().__init__()
        self.config, self.state, self.rng_tracker = config, state, rng_tracker
        init = normal_init(config.init_method_std)
        self.word_embeddings = VocabParallelEmbedding(
            config.padded_vocab_size(state.tp_size), config.hidden_size, state,
            init_rows=config.vocab_size, init_method=init)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.tokentype_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        init(self.position_embeddings.weight)
        init(self.tokentype_embeddings.weight)
        self.layernorm = (LayerNorm(config.hidden_size, config.layernorm_epsilon, state.sequence_parallel)
                          if config.layernorm_order == "post" else None)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        positions = torch.arange(seq_len, device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.tokentype_embeddings(token_type_ids))  # [b, s, h]
        x = x.transpose(0, 1).contiguous()  # [s, b, h]
        if self.state.sequence_parallel:
            x = scatter_to_sequence_parallel_region(x, self.state)  # [s/tp, b, h]
        if self.layernorm is not None:
            x = self.layernorm(x)
        with self.rng_tracker.fork_if_sharded(self.state.sequence_parallel, x.device):
            return dropout(x, self.config.hidden_dropout, self.training)
