"""Megatron BERT: embeddings, attention, MLP, transformer layers, encoder and heads."""

from megabio.model.bert import IGNORE_INDEX, BertForPretraining, BertModel

__all__ = ["IGNORE_INDEX", "BertForPretraining", "BertModel"]
