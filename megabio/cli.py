"""The `megabio` command (also `python -m megabio`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from megabio.config import PRESETS, ConfigError, ModelConfig
from megabio.finetune.cli import add_commands as add_finetune_commands
from megabio.sizing import model_report


def _add_model_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model-info", help="parameter count and estimated training memory of a preset",
        description="Print a preset's parameters (total and per tensor-parallel rank) and its estimated "
                    "training memory per rank (weights, gradients, Adam state and activations).")
    parser.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--vocab-size", type=int, help="unpadded vocabulary size (default: BERT-cased, 28996)")
    parser.add_argument("--tensor-model-parallel-size", type=int, default=1, metavar="N")
    parser.add_argument("--micro-batch-size", type=int, default=1)
    parser.add_argument("--seq-length", type=int, help="default: the preset's max positions")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_const", dest="precision", const="bf16")
    precision.add_argument("--fp16", action="store_const", dest="precision", const="fp16")
    parser.add_argument("--recompute-activations", action="store_true")
    parser.add_argument("--sequence-parallel", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_model_info, precision="fp32")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


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
    memory = report["training_memory_per_rank_bytes"]
    rows = [
        ("preset", args.preset),
        ("shape", f"{config.num_layers} layers x {config.hidden_size} hidden, {config.num_attention_heads} heads, "
                  f"ffn {config.ffn_hidden_size}"),
        ("vocab (padded)", f"{config.vocab_size} ({report['padded_vocab_size']})"),
        ("tensor parallel", str(args.tensor_model_parallel_size)),
        ("parameters", f"{report['parameters']:,} ({report['parameters'] / 1e6:.1f}M)"),
        ("parameters per rank", f"{report['parameters_per_rank']:,}"),
        (f"weights+grads+Adam ({args.precision})", _gib(memory["parameters_and_optimizer"])),
        (f"activations (micro-batch {args.micro_batch_size})", _gib(memory["activations"])),
        ("training memory per rank", _gib(memory["total"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """--input, --json-keys and --exclude-pmids, shared by every command that reads a corpus."""
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="plain text, JSON lines, PubTator, PubMed XML or gzip files, or directories of them")
    parser.add_argument("--json-keys", default="text", help="field holding the text in JSON lines")
    parser.add_argument("--exclude-pmids", metavar="FILE", help="PMIDs (first field per line) to leave out")


def _excluded_ids(args: argparse.Namespace) -> set[str] | None:
    from megabio.data.corpus import read_id_list

    return read_id_list(args.exclude_pmids) if args.exclude_pmids else None


def _add_vocab(subparsers: argparse._SubParsersAction) -> None:
    vocab = subparsers.add_parser("vocab", help="build a WordPiece vocabulary with SentencePiece; measure one")
    commands = vocab.add_subparsers(title="vocab commands", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build", help="train SentencePiece on a corpus and write a BERT vocab.txt",
        description="Train SentencePiece (unigram or BPE) on plain text, JSON lines, PubTator or gzip files "
                    "(or directories of them) and convert it to a BERT WordPiece vocab.txt of exactly "
                    "--vocab-size entries, with the SentencePiece model and a JSON card.")
    _add_corpus_arguments(build)
    build.add_argument("--vocab-size", type=int, default=30000)
    build.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    case = build.add_mutually_exclusive_group()
    case.add_argument("--cased", dest="lower_case", action="store_false", help="keep case (default)")
    case.add_argument("--uncased", dest="lower_case", action="store_true", help="lower-case and strip accents")
    build.add_argument("--sample-sentences", type=int, default=2_000_000,
                       help="lines SentencePiece samples from a larger corpus")
    build.add_argument("--output-dir", required=True)
    build.add_argument("--overwrite", action="store_true")
    build.set_defaults(handler=_vocab_build, lower_case=False)

    stats = commands.add_parser(
        "stats", help="sub-tokens per word (all and named-entity words), [UNK] rate, most fragmented words",
        description="Print JSON statistics of a vocabulary on IOB files (word<TAB>tag per line).")
    stats.add_argument("--vocab", required=True)
    stats.add_argument("--lower-case", action="store_true")
    stats.add_argument("--iob", nargs="+", required=True, metavar="FILE")
    stats.add_argument("--top", type=int, default=20, help="how many fragmented entity words to list")
    stats.set_defaults(handler=_vocab_stats)


def _vocab_build(args: argparse.Namespace) -> int:
    from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab

    settings = VocabSettings(vocab_size=args.vocab_size, model_type=args.model_type, lower_case=args.lower_case,
                             sample_sentences=args.sample_sentences, json_key=args.json_keys)
    build_vocab(args.input, args.output_dir, settings, exclude_ids=_excluded_ids(args), overwrite=args.overwrite)
    return 0


def _vocab_stats(args: argparse.Namespace) -> int:
    from megabio.tokenizer.vocab_stats import vocab_stats

    print(json.dumps(vocab_stats(args.vocab, args.iob, lower_case=args.lower_case, top=args.top), indent=2))
    return 0


def _add_preprocess(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="text to a Megatron-compatible indexed dataset (.bin/.idx)",
        description="Read plain text, JSON lines, PubTator, PubMed XML or gzip files, optionally split "
                    "sentences, WordPiece-tokenize in a process pool and write <prefix>_<key>_sentence.bin/.idx "
                    "(or _document with whole documents).")
    _add_corpus_arguments(parser)
    parser.add_argument("--vocab", "--vocab-file", dest="vocab", required=True, help="WordPiece vocab.txt")
    parser.add_argument("--lower-case", action="store_true")
    parser.add_argument("--split-sentences", action="store_true")
    parser.add_argument("--punkt", help="Punkt parameters from `megabio splitter train`")
    parser.add_argument("--output-prefix", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.set_defaults(handler=_preprocess)

    splitter = subparsers.add_parser("splitter", help="sentence splitter (Punkt) commands")
    commands = splitter.add_subparsers(title="splitter commands", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="learn Punkt parameters from a corpus",
                                description="Learn Punkt sentence-splitting parameters from the corpus and save "
                                            "them as JSON; biomedical abbreviations (i.v., et al., Fig., vs., "
                                            "e.g.) are always added.")
    _add_corpus_arguments(train)
    train.add_argument("--output", required=True, help="punkt.json to write")
    train.set_defaults(handler=_splitter_train)


def _preprocess(args: argparse.Namespace) -> int:
    from megabio.data.preprocess import PreprocessSettings, preprocess

    settings = PreprocessSettings(vocab_file=args.vocab, lower_case=args.lower_case,
                                  split_sentences=args.split_sentences, punkt_file=args.punkt,
                                  json_key=args.json_keys, workers=args.workers)
    preprocess(args.input, args.output_prefix, settings, exclude_ids=_excluded_ids(args))
    return 0


def _splitter_train(args: argparse.Namespace) -> int:
    from megabio.data.corpus import read_documents
    from megabio.tokenizer.sentences import save_params, train_punkt

    texts = (d.text for d in read_documents(args.input, args.json_keys, _excluded_ids(args)))
    save_params(train_punkt(texts), args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    from megabio.convert import FORMATS

    parser = subparsers.add_parser(
        "convert", help="convert checkpoints between megabio and Hugging Face; reshard tensor parallelism",
        description="Convert a checkpoint directory. hf-bert: transformers BERT (post-LN); hf-megatron-bert: "
                    "transformers MegatronBert (pre-LN); megabio: this project's checkpoints, any TP size. "
                    "Prints a report of mapped, initialised and ignored parameters.")
    parser.add_argument("--from", dest="source", choices=FORMATS, required=True)
    parser.add_argument("--to", dest="target", choices=FORMATS, required=True)
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


def _add_pretrain(subparsers: argparse._SubParsersAction) -> None:
    # Its flags live with the training code (`megabio pretrain --help`), imported only when it runs.
    parser = subparsers.add_parser("pretrain", help="pretrain a BERT encoder (under torchrun for TP/DP)",
                                   add_help=False)
    parser.set_defaults(handler=lambda args: _pretrain([]))


def _pretrain(argv: Sequence[str]) -> int:
    from megabio.training.pretrain_cli import main as pretrain_main

    return pretrain_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megabio", description="Megatron-style biomedical BERT training.")
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_model_info(subparsers)
    _add_vocab(subparsers)
    _add_preprocess(subparsers)
    _add_convert(subparsers)
    _add_pretrain(subparsers)
    add_finetune_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pretrain"]:  # its own parser: argparse cannot pass "--flags" through a sub-command
        return _pretrain(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, OSError) as error:
        print(f"megabio: error: {error}", file=sys.stderr)
        return 2
