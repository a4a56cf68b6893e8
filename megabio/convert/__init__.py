"""Checkpoint interop: Hugging Face BERT / MegatronBert and Megatron-LM <-> megabio, TP resharding, and
starting any model class from a pretrained checkpoint (`load_pretrained`)."""

from megabio.convert.converter import convert
from megabio.convert.hf import BERT, MEGATRON_BERT, ConversionError
from megabio.convert.pretrained import load_pretrained, load_shard, pretrained_config, pretrained_shard
from megabio.convert.sources import FORMATS, MEGATRON_LM, detect_format, read_any

__all__ = ["BERT", "FORMATS", "MEGATRON_BERT", "MEGATRON_LM", "ConversionError", "convert", "detect_format",
           "load_pretrained", "load_shard", "pretrained_config", "pretrained_shard", "read_any"]
