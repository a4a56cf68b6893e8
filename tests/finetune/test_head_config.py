"""Task heads: each task's default dropout (NeMo's heads; none before the QA span layer, as transformers'
BertForQuestionAnswering) unless the config names one, and the CLI's flag reaching the config."""

from __future__ import annotations

import pytest

from megabio.cli import build_parser
from megabio.cli.finetune import finetune_config
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.recipe import TaskSpec, head_config


@pytest.mark.parametrize(("kind", "expected"), [("token", 0.1), ("sequence", 0.1), ("span", 0.0)])
def test_default_dropout_is_the_tasks(kind, expected):
    spec = TaskSpec("task", kind, ["a", "b"], "dev_f1")
    assert head_config(spec, FinetuneConfig()).fc_dropout == expected
    assert head_config(spec, FinetuneConfig(fc_dropout=0.3)).fc_dropout == 0.3


@pytest.mark.parametrize(("flags", "expected"), [([], 0.0), (["--fc-dropout", "0.25"], 0.25)])
def test_cli_flag(flags, expected):
    """The QA command's default is the task's (as --dry-run prints it); the flag overrides it."""
    args = build_parser().parse_args(["finetune", "qa", "--checkpoint", "c", "--train", "t", "--dev", "d",
                                      "--output-dir", "o", *flags])
    assert finetune_config(args).fc_dropout == expected


def test_cli_defaults_follow_the_task():
    for task, expected in (("ner", 0.1), ("re", 0.1)):
        args = build_parser().parse_args(["finetune", task, "--checkpoint", "c", "--train", "t", "--dev", "d",
                                          "--output-dir", "o"])
        assert finetune_config(args).fc_dropout == expected
