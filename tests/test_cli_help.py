"""`--help` of every command renders, and shows each flag's default and, for flags built from a config,
the words the config documents the field with."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from megabio.cli import build_parser
from megabio.cli.common import field_help
from megabio.cli.pretrain import main as pretrain_main
from megabio.finetune.config import FinetuneConfig, SpanSettings
from megabio.training.config import TrainConfig


@dataclass
class _Documented:
    rate: float = 0.5
    """Share of   items
    kept, in %."""
    undocumented: int = 3
    name: str = "x"
    """Its name."""


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every leaf command."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from _commands(sub, (*path, name))


def _help_of(parser: argparse.ArgumentParser, flag: str) -> str:
    action = next(a for a in parser._actions if flag in a.option_strings)
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _command(words: tuple[str, ...]) -> argparse.ArgumentParser:
    return dict(_commands(build_parser()))[words]


def test_field_help_reads_each_documented_field_as_one_line():
    assert field_help(_Documented) == {"rate": "Share of items kept, in %%.", "name": "Its name."}


def test_configs_document_every_field_a_flag_is_built_from():
    assert set(field_help(FinetuneConfig)) == {f for f in FinetuneConfig.__dataclass_fields__}
    assert set(field_help(SpanSettings)) == {f for f in SpanSettings.__dataclass_fields__}
    assert {"lr", "seq_length", "adam_eps", "initial_loss_scale"} <= set(field_help(TrainConfig))


def test_every_command_help_renders(capsys):
    commands = list(_commands(build_parser()))
    assert len(commands) > 10
    for words, parser in commands:
        assert parser.format_help(), words
    with pytest.raises(SystemExit) as leaving:
        pretrain_main(["--help"])
    assert leaving.value.code == 0
    assert "Peak learning rate, reached at the end of warmup. (default: 0.0001)" in \
        " ".join(capsys.readouterr().out.split())


def test_finetune_flags_show_the_task_default_beside_the_config_words():
    qa, ner = _command(("finetune", "qa")), _command(("finetune", "ner"))
    assert _help_of(qa, "--lr") == f"{field_help(FinetuneConfig)['lr']} (default: 3e-05)"
    assert _help_of(ner, "--lr") == f"{field_help(FinetuneConfig)['lr']} (default: {FinetuneConfig().lr})"
    assert _help_of(qa, "--seq-length").endswith("(default: 384)")
    assert _help_of(qa, "--fc-dropout").endswith("(default: 0.0)")
    assert _help_of(ner, "--fc-dropout").endswith("(default: 0.1)")
    assert _help_of(qa, "--doc-stride") == f"{field_help(SpanSettings)['doc_stride']} (default: 128)"


def test_no_default_is_shown_for_switches_unset_values_or_twice():
    qa = _command(("finetune", "qa"))
    for flag in ("--bf16", "--bioasq", "--overwrite", "--golden", "--test", "--global-batch-size"):
        assert "(default" not in _help_of(qa, flag), flag
    assert _help_of(qa, "--world-size").count("default") == 1
