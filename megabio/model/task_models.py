"""Task models on BertModel (kept at `.bert`, so every pretrained checkpoint's encoder keys load): token
classification (NER), sequence classification (RE) and span extraction (QA).

Each head is dropout then one or two Linear layers (ReLU between, as NeMo's BioMegatron heads). Heads are
replicated: under tensor parallelism every rank holds the same weights and sees the same full hidden
states, so the results equal a single process's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from megabio.config import IGNORE_INDEX, ConfigError, ModelConfig
from megabio.model.bert import BertModel
from megabio.model.heads import replicated_linear
from megabio.parallel import ParallelState
from megabio.parallel.layers import normal_init

TaskKind = Literal["token", "sequence", "span"]


@dataclass(frozen=True)
class HeadConfig:
    """The task head on top of the encoder; saved with a fine-tuned model."""

    num_labels: int
    """Output classes (2 for span extraction: start and end)."""
    num_fc_layers: int = 1
    """1: Linear(h, labels). 2: Linear(h, fc_hidden_size), ReLU, Linear(fc_hidden_size, labels)."""
    fc_hidden_size: int | None = None
    """Width of the first of two layers; None takes the encoder's hidden size."""
    fc_dropout: float = 0.1
    """Dropout on the encoder output before the head."""

    def __post_init__(self) -> None:
        if self.num_fc_layers not in (1, 2):
            raise ConfigError(f"num_fc_layers={self.num_fc_layers}: choose 1 or 2")
        if not 0.0 <= self.fc_dropout < 1.0:
            raise ConfigError(f"fc_dropout={self.fc_dropout} must lie in [0, 1)")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels={self.num_labels} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ClassificationHead(nn.Module):
    """`[..., h]` -> dropout -> (Linear -> ReLU ->) Linear -> `[..., num_labels]`."""

    def __init__(self, hidden_size: int, head: HeadConfig, init_std: float) -> None:
        super().__init__()
        init = normal_init(init_std)
        self.dropout = nn.Dropout(head.fc_dropout)
        width = hidden_size
        self.hidden = None
        if head.num_fc_layers == 2:
            width = head.fc_hidden_size or hidden_size
            self.hidden = replicated_linear(hidden_size, width, init)
        self.classifier = replicated_linear(width, head.num_labels, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        if self.hidden is not None:
            x = F.relu(self.hidden(x))
        return self.classifier(x)


class _TaskModel(nn.Module):
    kind: TaskKind

    def __init__(self, config: ModelConfig, head: HeadConfig, parallel_state: ParallelState | None = None) -> None:
        super().__init__()
        self.bert = BertModel(config, parallel_state)
        self.config, self.head_config, self.parallel_state = config, head, self.bert.parallel_state
        self.head = ClassificationHead(config.hidden_size, head, config.init_method_std)


class BertForTokenClassification(_TaskModel):
    """Per-token logits. `forward(input_ids, attention_mask, labels=None, positions=None)`:

    - with `labels` `[b, s]` (IGNORE_INDEX where unlabelled): `(mean cross entropy, logits [n_labelled, C])`,
      the head run on the labelled positions only;
    - with a boolean `positions` `[b, s]`: logits `[n_true, C]` at those positions (row-major order);
    - otherwise logits `[b, s, C]`.
    """

    kind: TaskKind = "token"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                positions: torch.Tensor | None = None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids)  # [b, s, h]
        if labels is None:
            return self.head(hidden if positions is None else hidden[positions])
        labelled = labels != IGNORE_INDEX
        logits = self.head(hidden[labelled])  # [n, C]
        loss = F.cross_entropy(logits.float(), labels[labelled], reduction="sum") / labelled.sum().clamp(min=1)
        return loss, logits


class BertForSequenceClassification(_TaskModel):
    """Logits `[b, C]` from the pooled first token (dense + tanh, the pretrained pooler when the checkpoint
    has one), or, given `marker_positions` `[b, 2]`, from the two marker tokens' states concatenated (entity
    markers; the head then reads 2h features). With `labels` `[b]`: `(mean cross entropy, logits)`."""

    kind: TaskKind = "sequence"

    def __init__(self, config: ModelConfig, head: HeadConfig, parallel_state: ParallelState | None = None,
                 entity_markers: bool = False) -> None:
        super().__init__(config, head, parallel_state)
        self.entity_markers = entity_markers
        self.pooler = replicated_linear(config.hidden_size, config.hidden_size, normal_init(config.init_method_std))
        if entity_markers:
            self.head = ClassificationHead(2 * config.hidden_size, head, config.init_method_std)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                marker_positions: torch.Tensor | None = None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids)  # [b, s, h]
        if self.entity_markers:
            if marker_positions is None:
                raise ValueError("a model with entity markers needs marker_positions [batch, 2]")
            rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
            features = hidden[rows, marker_positions].flatten(1)  # [b, 2h]
        else:
            features = torch.tanh(self.pooler(hidden[:, 0]))  # [b, h]
        logits = self.head(features)
        if labels is None:
            return logits
        return F.cross_entropy(logits.float(), labels), logits


class BertForSpanExtraction(_TaskModel):
    """Start and end logits `[b, s]` each (padding positions at -1e4). With `start_positions` and
    `end_positions` `[b]`: `(mean of the start and end cross entropies, (start, end))`."""

    kind: TaskKind = "span"

    def __init__(self, config: ModelConfig, head: HeadConfig, parallel_state: ParallelState | None = None) -> None:
        if head.num_labels != 2:
            raise ConfigError(f"span extraction has 2 outputs (start, end), not num_labels={head.num_labels}")
        super().__init__(config, head, parallel_state)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids)  # [b, s, h]
        start, end = self.head(hidden).float().unbind(-1)  # [b, s] each
        if attention_mask is not None:
            start, end = mask_padded_positions(start, end, attention_mask)
        if start_positions is None:
            return start, end
        return span_loss(start, end, start_positions, end_positions), (start, end)


def mask_padded_positions(start: torch.Tensor, end: torch.Tensor, attention_mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end logits `[b, s]` with the padded positions (attention_mask 0) at -1e4: they take no
    probability in the span softmax and are never an answer's start or end."""
    padding = attention_mask == 0
    return start.masked_fill(padding, -1e4), end.masked_fill(padding, -1e4)


def span_loss(start: torch.Tensor, end: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """The mean of the start and end cross entropies over each window's positions (logits `[b, s]`)."""
    return (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2


TASK_MODELS: dict[TaskKind, type[_TaskModel]] = {
    "token": BertForTokenClassification, "sequence": BertForSequenceClassification, "span": BertForSpanExtraction}
