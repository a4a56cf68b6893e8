"""The `megabio` command (also `python -m megabio`): argument parsing only; every command calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from megabio.cli import corpus, finetune, models
from megabio.cli.common import run_reporting_errors, show_defaults


def _add_pretrain(subparsers: argparse._SubParsersAction) -> None:
    # Its flags live with its own parser (`megabio pretrain --help`), imported only when it runs.
    subparsers.add_parser("pretrain", help="pretrain a BERT encoder (under torchrun for TP/DP)", add_help=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megabio", description="Megatron-style biomedical BERT training.")
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    models.add_model_info(subparsers)
    corpus.add_vocab(subparsers)
    corpus.add_preprocess(subparsers)
    corpus.add_data(subparsers)
    models.add_convert(subparsers)
    _add_pretrain(subparsers)
    finetune.add_commands(subparsers)
    return show_defaults(parser)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pretrain"]:  # its own parser: argparse cannot pass "--flags" through a sub-command
        from megabio.cli.pretrain import main as pretrain_main

        return pretrain_main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: args.handler(args), "megabio")
