"""`megabio model-info` and `megabio convert`."""

from __future__ import annotations

import argparse
import json

from megabio.cli.common import add_precision_flags, print_memory_report
from megabio.config import PRESETS, ConfigError, ModelConfig
from megabio.sizing import model_report


def add_model_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model-info", help="parameter count and estimated training memory of a preset",
        description="Print a preset's parameters (total and per tensor-parallel rank) and its estimated "
                    "training memory per rank (weights, gradients, Adam state and activations).")
    parser.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--vocab-size", type=int, help="unpadded vocabulary size (default: BERT-cased, 28996)")
    parser.add_argument("--tensor-model-parallel-size", type=int, default=1, metavar="N")
    parser.add_argument("--micro-batch-size", type=int, default=1)
    parser.add_argument("--seq-length", type=int, help="default: the preset's max positions")
    add_precision_flags(parser)
    parser.add_argument("--recompute-activations", action="store_true")
    parser.add_argument("--sequence-parallel", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_model_info)


def _model_info(args: argparse.Namespace) -> int:
    overrides = {} if args.vocab_size is None else {"vocab_size": args.vocab_size}
    config = ModelConfig.from_preset(args.preset, **overrides)
    if args.seq_length is not None and args.seq_length > config.max_position_embeddings:
        raise ConfigError(f"--seq-length {args.seq_length} exceeds the preset's max_position_embeddings="
                          f"{config.max_position_embeddings}")
    report = model_report(
        config, args.tensor_model_parallel_size, micro_batch_size=args.micro_batch_size,
        seq_length=args.seq_length, precision=args.precision,
        recompute_activations=args.recompute_activations, sequence_parallel=args.sequence_parallel)
    report = {"preset": args.preset, **report}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_memory_report(config, report, args.tensor_model_parallel_size, args.precision, args.micro_batch_size,
                        preset=args.preset)
    return 0


def add_convert(subparsers: argparse._SubParsersAction) -> None:
    # No choices from megabio.convert here: importing it loads torch, which every command would then pay
    # for; convert() names the formats when one is wrong.
    parser = subparsers.add_parser(
        "convert", help="convert checkpoints between megabio and Hugging Face; reshard tensor parallelism",
        description="Convert a checkpoint directory. hf-bert: transformers BERT (post-LN); hf-megatron-bert: "
                    "transformers MegatronBert (pre-LN); megabio: this project's checkpoints, any TP size. "
                    "Prints a report of mapped, initialised and ignored parameters.")
    parser.add_argument("--from", dest="source", required=True,
                        help="megabio, hf-bert, hf-megatron-bert or megatron-lm")
    parser.add_argument("--to", dest="target", required=True, help="megabio, hf-bert or hf-megatron-bert")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--target-tensor-model-parallel-size", type=int, default=1, metavar="N")
    parser.add_argument("--vocab-file", help="vocab.txt of a Megatron-LM checkpoint (default: beside it)")
    parser.add_argument("--lower-case", action="store_true", help="the Megatron-LM vocabulary is uncased")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a Megatron-LM pickle without the safety allowlist (runs its code!)")
    parser.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from megabio.convert import convert

    report = convert(args.source, args.target, args.input, args.output, args.target_tensor_model_parallel_size,
                     vocab_file=args.vocab_file, lower_case=args.lower_case, trust_checkpoint=args.trust_checkpoint)
    print(f"converted {args.input} ({args.source}) -> {args.output} ({args.target})")
    print(f"  parameters mapped: {len(report['mapped'])}")
    print(f"  padded vocabulary rows: {report['padded_vocab_rows']}")
    for key in ("optimizer_state", "rng_states"):
        if key in report:
            print(f"  {key.replace('_', ' ')}: {report[key]}")
    for name in report.get("initialised", []):
        print(f"  initialised (not in the checkpoint): {name}")
    for name in report.get("ignored", []):
        print(f"  ignored (not used by megabio): {name}")
    for note in report.get("notes", []):
        print(f"  note: {note}")
    return 0


