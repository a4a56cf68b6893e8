"""Settings each task takes from its kind unless the config names them (head dropout: NeMo's heads; none
before the QA span layer, as transformers' BertForQuestionAnswering), and the CLI's flags reaching the
config."""

from __future__ import annotations

import pytest

from megabio.cli import build_parser
from megabio.cli.finetune import finetune_config
from megabio.finetune.config import TASK_DEFAULTS, FinetuneConfig
from megabio.finetune.recipe import TaskSpec, head_config

KINDS = {"ner": "token", "re": "sequence", "qa": "span"}


@pytest.mark.parametrize(("kind", "expected"), [("token", 0.1), ("sequence", 0.1), ("span", 0.0)])
def test_default_dropout_is_the_tasks(kind, expected):
    spec = TaskSpec("task", kind, ["a", "b"], "dev_f1")
    assert head_config(spec, FinetuneConfig()).fc_dropout == expected
    assert head_config(spec, FinetuneConfig(fc_dropout=0.3)).fc_dropout == 0.3


@pytest.mark.parametrize("kind", list(KINDS.values()))
def test_for_task_fills_only_what_is_unset(kind):
    resolved = FinetuneConfig(lr=1e-4).for_task(kind)
    assert {name: getattr(resolved, name) for name in TASK_DEFAULTS[kind]} == TASK_DEFAULTS[kind]
    assert resolved.lr == 1e-4
    chosen = FinetuneConfig(fc_dropout=0.25)
    assert chosen.for_task(kind) == chosen


def _parse(task: str, *flags: str):
    return finetune_config(build_parser().parse_args(["finetune", task, "--checkpoint", "c", "--train", "t",
                                                      "--dev", "d", "--output-dir", "o", *flags]))


@pytest.mark.parametrize("task", list(KINDS))
def test_cli_defaults_follow_the_task(task):
    """Each command's defaults are its task's (as --dry-run prints them)."""
    config = _parse(task)
    assert {name: getattr(config, name) for name in TASK_DEFAULTS[KINDS[task]]} == TASK_DEFAULTS[KINDS[task]]


def test_cli_flags_override():
    config = _parse("qa", "--fc-dropout", "0.25", "--no-group-by-length")
    assert (config.fc_dropout, config.group_by_length) == (0.25, False)
    assert _parse("re").group_by_length is True
