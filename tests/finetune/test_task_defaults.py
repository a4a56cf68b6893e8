"""Head dropout each task takes from its kind unless the config names one (NeMo's heads; none before the QA
span layer, as transformers' BertForQuestionAnswering), and the CLI's flags reaching the config."""

from __future__ import annotations

import pytest

from megabio.cli import build_parser
from megabio.cli.finetune import finetune_config
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.recipe import TaskSpec, head_config


@pytest.mark.parametrize(("kind", "expected"), [("token", 0.1), ("sequence", 0.1), ("span", 0.0)])
def test_default_dropout_is_the_tasks(kind, expected):
    spec = TaskSpec("task", kind, ["a", "b"], "dev_f1")
    resolved = FinetuneConfig(lr=1e-4).for_task(kind)
    assert (resolved.fc_dropout, resolved.lr) == (expected, 1e-4)
    assert head_config(spec, resolved).fc_dropout == expected
    chosen = FinetuneConfig(fc_dropout=0.3)
    assert chosen.for_task(kind) == chosen


def _parse(task: str, *flags: str):
    return finetune_config(build_parser().parse_args(["finetune", task, "--checkpoint", "c", "--train", "t",
                                                      "--dev", "d", "--output-dir", "o", *flags]))


@pytest.mark.parametrize(("task", "expected"), [("ner", 0.1), ("re", 0.1), ("qa", 0.0)])
def test_cli_defaults_follow_the_task(task, expected):
    """Each command's default is its task's (as --dry-run prints it)."""
    assert _parse(task).fc_dropout == expected


def test_cli_flags_override():
    config = _parse("qa", "--fc-dropout", "0.25", "--no-group-by-length")
    assert (config.fc_dropout, config.group_by_length) == (0.25, False)
    assert _parse("re").group_by_length is True
