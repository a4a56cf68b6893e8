"""BertModel (the encoder) and BertForPretraining (encoder + MLM and binary heads)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from megabio.config import IGNORE_INDEX, ModelConfig
from megabio.model.embeddings import BertEmbeddings
from megabio.model.heads import BertLMHead, BinaryHead
from megabio.model.transformer import TransformerEncoder
from megabio.parallel.cross_entropy import vocab_parallel_cross_entropy
from megabio.parallel.random import RNGStatesTracker, model_parallel_rng_tracker
from megabio.parallel.state import ParallelState


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# The labelled rows reach the MLM head in a count padded to this multiple: the vocabulary GEMMs (forward,
# input and weight gradients) ran 5-10% slower at odd row counts on an AVX-512 CPU, in fp32 and bf16
# (README, Benchmarks), and tensor cores want multiples of 8.
_HEAD_ROW_MULTIPLE = 8


def _pad_rows(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden `[n, h]` and labels `[n]` padded with zero rows and ignored labels to a multiple of
    `_HEAD_ROW_MULTIPLE` rows: the padding adds nothing to the loss and gets no gradient."""
    padding = -hidden.shape[0] % _HEAD_ROW_MULTIPLE
    return F.pad(hidden, (0, 0, 0, padding)), F.pad(labels, (0, padding), value=IGNORE_INDEX)


class BertModel(nn.Module):
    """Megatron BERT encoder: `forward(input_ids [b, s], attention_mask, token_type_ids)` -> `[b, s, h]`.

    `attention_mask` is 1 for tokens and 0 for padding. Weights are drawn at full size and sliced, so a
    model built after torch.manual_seed(s) is the same for any TP size. Dropout on TP-sharded activations
    uses `rng_tracker` (by default seeded from torch.initial_seed(), offset by the TP rank).
    """

    def __init__(self, config: ModelConfig, parallel_state: ParallelState | None = None,
                 rng_tracker: RNGStatesTracker | None = None) -> None:
        super().__init__()
        state = parallel_state or ParallelState.single()
        config.check_tensor_parallel(state.tp_size)
        self.config, self.parallel_state = config, state
        self.rng_tracker = rng_tracker or model_parallel_rng_tracker(torch.initial_seed(), state)
        self.embeddings = BertEmbeddings(config, state, self.rng_tracker)
        self.encoder = TransformerEncoder(config, state, self.rng_tracker)

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      token_type_ids: torch.Tensor | None) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}; truncate the input or use a larger model")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            raise ValueError(f"input_ids must lie in [0, vocab_size={self.config.vocab_size}); got values in "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]: does the vocabulary match?")
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if tensor is not None and tensor.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, input_ids {tuple(input_ids.shape)}")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """`[b, s, h]`, or with `rows` (bool `[b, s]`) those positions alone, `[n, h]` in batch-major order
        (the last layer then does the work after attention at those positions only)."""
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        padding_mask = None if attention_mask is None else (attention_mask == 0)[:, None, None, :]  # [b,1,1,s]
        x = self.embeddings(input_ids, token_type_ids)  # [s, b, h]
        x = self.encoder(x, padding_mask, rows)  # [s, b, h] or [n, h]
        return x if rows is not None else x.transpose(0, 1)  # [b, s, h]


class BertForPretraining(nn.Module):
    """BertModel at `.bert` with the tied MLM head and (unless binary_head='none') the SOP/NSP head.

    `forward(...)` returns `(loss, mlm_logits, binary_logits)`: mlm_logits `[b, s, padded_vocab / tp]` is
    this rank's vocabulary shard; loss is the mean MLM cross entropy over labelled tokens (labels of -100
    are ignored) plus the binary cross entropy, or None without labels.
    """

    def __init__(self, config: ModelConfig, parallel_state: ParallelState | None = None,
                 rng_tracker: RNGStatesTracker | None = None) -> None:
        super().__init__()
        self.bert = BertModel(config, parallel_state, rng_tracker)
        self.config, self.parallel_state = config, self.bert.parallel_state
        self.lm_head = BertLMHead(config, self.parallel_state, self.bert.embeddings.word_embeddings)
        self.binary_head = BinaryHead(config) if config.binary_head != "none" else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                binary_labels: torch.Tensor | None = None, logits_at_labels_only: bool = False
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """With `logits_at_labels_only` (needs mlm_labels) the MLM head runs only at labelled positions and
        mlm_logits is `[n_labelled, vocab / tp]` in row-major position order: the same loss and gradients
        for ~1/7 of the head's work at 15% masking (NVIDIA's BERT does the same). The last layer's queries,
        attention, output projection and MLP then also run only at those positions and the first tokens,
        all the heads read (its dropout masks are drawn for those rows alone)."""
        if binary_labels is not None and self.binary_head is None:
            raise ValueError("binary_labels were given but the model has binary_head='none'")
        if logits_at_labels_only and mlm_labels is None:
            raise ValueError("logits_at_labels_only=True needs mlm_labels")
        labelled = None if mlm_labels is None else mlm_labels != IGNORE_INDEX
        if logits_at_labels_only:
            first_token, labelled_hidden = self._hidden_at_labels(input_ids, attention_mask, token_type_ids,
                                                                  labelled)
        else:
            hidden = self.bert(input_ids, attention_mask, token_type_ids)  # [b, s, h]
            first_token = hidden[:, 0]
        binary_logits = self.binary_head(first_token) if self.binary_head is not None else None
        loss = None
        if mlm_labels is None:
            mlm_logits = self.lm_head(hidden)  # [b, s, vocab / tp]
        else:
            # Only ~15% of positions carry a label: the softmax over the vocabulary runs on those alone.
            labels = mlm_labels[labelled]
            if logits_at_labels_only:
                labelled_count = labels.shape[0]
                labelled_hidden, labels = _pad_rows(labelled_hidden, labels)
                labelled_logits = self.lm_head(labelled_hidden)
                mlm_logits = labelled_logits[:labelled_count]
            else:
                mlm_logits, labelled_logits = self.lm_head.with_rows(hidden, labelled)  # [b, s, vocab / tp]
            per_token = vocab_parallel_cross_entropy(labelled_logits, labels, self.parallel_state)
            loss = per_token.sum() / labelled.sum().clamp(min=1)
        if binary_labels is not None:
            binary_loss = F.cross_entropy(_at_least_fp32(binary_logits), binary_labels, ignore_index=IGNORE_INDEX)
            loss = binary_loss if loss is None else loss + binary_loss
        return loss, mlm_logits, binary_logits

    def _hidden_at_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                          token_type_ids: torch.Tensor | None, labelled: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output at the first token of each sample `[b, h]` (for the binary head) and at
        the labelled positions `[n, h]`, with the last layer run at just those positions."""
        rows = labelled.clone()
        rows[:, 0] = True
        hidden = self.bert(input_ids, attention_mask, token_type_ids, rows=rows)  # [rows, h]
        index = (rows.flatten().cumsum(0) - 1).view_as(rows)  # each selected position's row in `hidden`
        return hidden.index_select(0, index[:, 0]), hidden.index_select(0, index[labelled])
