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


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--fc-dropout", "0.25"], 0.25)])
def test_cli_flag(flags, expected):
    args = build_parser().parse_args(["finetune", "qa", "--checkpoint", "c", "--train", "t", "--dev", "d",
                                      "--output-dir", "o", *flags])
    assert finetune_config(args).fc_dropout == expected
