"""FinetuneConfig: the hyper-parameters every fine-tuning recipe shares (flag names as in Megatron / NeMo)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from megabio.config import ConfigError
from megabio.training.config import Precision, TrainConfig

# Head dropout per task kind when the config gives none: before the NER and RE classifiers as NeMo's
# BioMegatron heads; none before the QA span layer, as NeMo's QA head and transformers'
# BertForQuestionAnswering.
DEFAULT_FC_DROPOUT: dict[str, float] = {"token": 0.1, "sequence": 0.1, "span": 0.0}


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3
    """Passes over the training set; the model of the best dev score is kept."""
    lr: float = 5e-5
    """Peak learning rate (AdamW), reached after warmup, then decayed linearly to 0."""
    micro_batch_size: int = 32
    """Examples per forward/backward on one data-parallel rank."""
    global_batch_size: int | None = None
    """Examples per optimizer step over all ranks; None: micro_batch_size x data-parallel size."""
    seq_length: int = 128
    """Longest input in tokens; longer inputs are cut into overlapping windows."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and LayerNorm weights)."""
    lr_warmup_fraction: float = 0.1
    """Fraction of all steps spent warming the LR up linearly."""
    clip_grad: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    seed: int = 1234
    """Seeds the head's initialisation, dropout and the data order."""
    precision: Precision = "fp32"
    """Autocast precision of forward and backward; fp16 adds dynamic loss scaling."""
    num_fc_layers: int = 1
    """Linear layers in the task head (1 or 2)."""
    fc_hidden_size: int | None = None
    """Width of the first of two head layers; None: the encoder's hidden size."""
    fc_dropout: float | None = None
    """Dropout on the encoder output before the head; None: the task's default (0.1 for NER and RE, 0 for
    QA)."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster epochs) instead of at random."""
    log_interval: int = 50
    """Steps between progress lines."""
    tensorboard_dir: str | None = None
    """Write training and dev scalars here."""

    def __post_init__(self) -> None:
        for name in ("epochs", "micro_batch_size", "seq_length", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive")

    def global_batch(self, data_parallel_size: int) -> int:
        size = self.global_batch_size or self.micro_batch_size * data_parallel_size
        if size % data_parallel_size:
            raise ConfigError(f"global_batch_size={size} is not divisible by the data-parallel size "
                              f"{data_parallel_size}")
        return size

    def train_config(self, steps: int, data_parallel_size: int) -> TrainConfig:
        """The engine's settings for `steps` optimizer steps."""
        return TrainConfig(micro_batch_size=self.micro_batch_size,
                           global_batch_size=self.global_batch(data_parallel_size), seq_length=self.seq_length,
                           train_iters=max(1, steps), lr=self.lr, lr_warmup_fraction=self.lr_warmup_fraction,
                           lr_decay_style="linear", weight_decay=self.weight_decay, clip_grad=self.clip_grad,
                           precision=self.precision, seed=self.seed, tensorboard_dir=self.tensorboard_dir)

    def for_task(self, kind: str) -> FinetuneConfig:
        """This config with the task kind's head dropout if it gives none."""
        return self if self.fc_dropout is not None else dataclasses.replace(self, fc_dropout=DEFAULT_FC_DROPOUT[kind])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SpanSettings:
    """Span-extraction (QA) settings beside FinetuneConfig, with BERT's SQuAD defaults."""

    doc_stride: int = 128
    """Tokens between the starts of a long context's windows."""
    max_query_length: int = 64
    """Question tokens kept."""
    n_best: int = 20
    """Answers kept per question."""
    max_answer_length: int = 30
    """Longest answer in tokens."""
