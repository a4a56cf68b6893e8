"""Megatron BERT: embeddings, attention, MLP, transformer layers, encoder, pretraining and task heads."""

from megabio.config import IGNORE_INDEX
from megabio.model.bert import BertForPretraining, BertModel
from megabio.model.task_models import (
    BertForSequenceClassification,
    BertForSpanExtraction,
    BertForTokenClassification,
    HeadConfig,
)

__all__ = ["IGNORE_INDEX", "BertForPretraining", "BertForSequenceClassification", "BertForSpanExtraction",
           "BertForTokenClassification", "BertModel", "HeadConfig"]
