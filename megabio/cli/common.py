"""Flags and helpers every `megabio` command shares."""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import itertools
import sys
import textwrap
from collections.abc import Callable
from typing import TextIO


def add_precision_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--bf16 / --fp16 onto `precision` (default fp32)."""
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_const", dest="precision", const="bf16")
    precision.add_argument("--fp16", action="store_const", dest="precision", const="fp16")
    parser.set_defaults(precision="fp32")


def command_group(subparsers: argparse._SubParsersAction, name: str, help: str, metavar: str = "COMMAND"
                  ) -> argparse._SubParsersAction:
    """`megabio NAME SUBCOMMAND ...`: a command whose sub-commands are added to the returned action."""
    group = subparsers.add_parser(name, help=help)
    return group.add_subparsers(title=f"{name} {metavar.lower()}s", required=True, metavar=metavar)


def run_reporting_errors(handler: Callable[[], int], prog: str) -> int:
    """Run a command; an error the user can cause (bad value, file, format) ends in one line and exit 2."""
    from megabio.config import ConfigError

    try:
        return handler()
    except (ConfigError, ValueError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def first_rank_log(state, stream: TextIO = sys.stderr) -> Callable[[str], None]:
    """Print progress on the first rank only (to stderr, unless the command's output is the log itself)."""
    if state.tp_rank == 0 and state.dp_rank == 0:
        return lambda message: print(message, file=stream, flush=True)
    return lambda message: None


def parallel_state(tensor_model_parallel_size: int, sequence_parallel: bool = False):
    """Join the launcher's job (torchrun) when there is one, and lay out TP x DP over it."""
    from megabio.parallel import initialize
    from megabio.parallel.launch import init_process_group_from_env

    init_process_group_from_env()
    return initialize(tensor_model_parallel_size, sequence_parallel=sequence_parallel)


def print_memory_report(config, report: dict, tp: int, precision: str, micro_batch_size: int,
                        preset: str | None = None) -> None:
    """`megabio.sizing.model_report` as aligned rows: shape, parameters, training memory per rank."""
    memory = report["training_memory_per_rank_bytes"]
    rows = [("preset", preset)] if preset else []
    rows += [
        ("shape", f"{config.num_layers} layers x {config.hidden_size} hidden, {config.num_attention_heads} heads, "
                  f"ffn {config.ffn_hidden_size}"),
        ("vocab (padded)", f"{config.vocab_size} ({report['padded_vocab_size']})"),
        ("tensor parallel", str(tp)),
        ("parameters", f"{report['parameters']:,} ({report['parameters'] / 1e6:.1f}M)"),
        ("parameters per rank", f"{report['parameters_per_rank']:,}"),
        (f"weights+grads+Adam ({precision})", f"{memory['parameters_and_optimizer'] / 2**30:.2f} GiB"),
        (f"activations (micro-batch {micro_batch_size})", f"{memory['activations'] / 2**30:.2f} GiB"),
        ("training memory per rank", f"{memory['total'] / 2**30:.2f} GiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


@functools.cache  # each recipe's parser asks again
def field_help(cls: type) -> dict[str, str]:
    """A dataclass's attribute docstrings (the string under each field), as one-line help texts: the
    configs document their fields once, and the flags built from them show the same words."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for field, doc in itertools.pairwise(body):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            docs[field.target.id] = " ".join(doc.value.value.split()).replace("%", "%%")
    return docs


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append "(default: X)" to the help of every option of `parser` and its sub-commands that takes a value
    and has a default its help does not already name, as `--help` readers expect."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                show_defaults(sub)
            continue
        unset = not isinstance(action.default, int | float) and not action.default  # None, "", []
        if (not action.option_strings or action.nargs == 0  # switches: their default is "not given"
                or unset or action.default == argparse.SUPPRESS
                or action.help == argparse.SUPPRESS or "(default" in (action.help or "")):
            continue
        action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
    return parser
