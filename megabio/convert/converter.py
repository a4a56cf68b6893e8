"""`convert`: any readable checkpoint into megabio (any TP size) or transformers BERT / MegatronBert."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from megabio.checkpoint import write_checkpoint
from megabio.convert.hf import BERT, MEGATRON_BERT, ConversionError
from megabio.convert.hf_files import write_hf
from megabio.convert.sources import FORMATS, MEGATRON_LM, check_vocab_file, read_any


def convert(source_format: str, target_format: str, input_path: str | os.PathLike, output: str | os.PathLike,
            target_tensor_model_parallel_size: int = 1, vocab_file: str | os.PathLike | None = None,
            lower_case: bool | None = None, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Convert a checkpoint directory; returns the report (mapped, initialised, ignored, padded rows)."""
    if target_format not in FORMATS or target_format == MEGATRON_LM:
        raise ConversionError(f"target format {target_format!r}: choose one of megabio, {BERT}, {MEGATRON_BERT}")
    state, config, info = read_any(input_path, source_format, vocab_file, lower_case, trust_checkpoint)
    check_vocab_file(Path(info["vocab"]), config)
    if target_format == "megabio":
        config.check_tensor_parallel(target_tensor_model_parallel_size)
        write_checkpoint(output, state, config, target_tensor_model_parallel_size,
                         iteration=info.get("iteration", "release"), optimizer=info.get("optimizer"),
                         extra={"tokenizer": {"lower_case": info["lower_case"]}, **info.get("training", {})},
                         vocab_file=info["vocab"])
    else:
        if (target_format == BERT) != (config.layernorm_order == "post"):
            raise ConversionError(f"{target_format} needs a {'post' if target_format == BERT else 'pre'}-LN "
                                  f"model; this one is {config.layernorm_order}-LN "
                                  f"(convert to {MEGATRON_BERT if target_format == BERT else BERT})")
        write_hf(Path(output), state, config, target_format, Path(info["vocab"]), info["lower_case"],
                 info.get("training", {}).get("task"))
    report = dict(info["report"])
    if target_format == "megabio" and info.get("optimizer") is not None:
        report["optimizer_state"] = f"resharded to TP={target_tensor_model_parallel_size}"
        report["rng_states"] = "not carried (per TP rank): a resumed run re-seeds dropout"
    report["padded_vocab_rows"] = config.padded_vocab_size(target_tensor_model_parallel_size) - config.vocab_size
    return report
