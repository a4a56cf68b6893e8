"""Megatron-LM's pretrain_bert.py command lines on `megabio pretrain`: the example runs (--dry-run), Megatron's
own flags are translated, and the ones megabio has no feature for are named together with what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from megabio.cli import main
from megabio.cli.megatron_flags import translate
from megabio.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "megatron_pretrain_bert.sh"


def test_the_megatron_example_runs_with_dry_run(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(30522)))
    env = {**os.environ, "DATA_PATH": str(tmp_path / "data"), "VOCAB_FILE": str(vocab),
           "CHECKPOINT_PATH": str(tmp_path / "ckpt"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(EXAMPLE), "--dry-run"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"precision": "fp16"' in result.stdout and '"num_layers": 24' in result.stdout
    assert "layout: world 1 = TP 1 x DP 1" in result.stdout


def test_flags_are_translated():
    assert translate(["--bert-no-binary-head", "--mask-prob=0.2", "--data-impl", "mmap", "--num-layers", "2",
                      "--no-masked-softmax-fusion", "--tokenizer-type", "BertWordPieceLowerCase"]) == \
        ["--binary-head", "none", "--masked-lm-prob", "0.2", "--num-layers", "2"]


def test_unsupported_flags_are_named_together_with_the_way_on():
    with pytest.raises(ConfigError) as error:
        translate(["--split", "949,50,1", "--eval-interval", "1000", "--data-impl", "lazy", "--lr", "1e-4"])
    message = str(error.value)
    assert "--split: megabio pretraining has no validation" in message
    assert "--eval-interval: there is no validation pass" in message
    assert "--data-impl lazy: megabio runs only as mmap" in message


def test_unsupported_flag_exits_2_in_one_line(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n")
    code = main(["pretrain", "--preset", "tiny", "--vocab-file", str(vocab), "--data-path", "x", "--split",
                 "949,50,1", "--lr-decay-iters", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "--split" in err and len(err.strip().splitlines()) == 1


def test_lr_decay_iters_must_equal_train_iters(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(100)))
    common = ["pretrain", "--preset", "tiny", "--vocab-file", str(vocab), "--data-path", "x", "--dry-run",
              "--train-iters", "10", "--seq-length", "64"]
    assert main([*common, "--lr-decay-iters", "5"]) == 2
    assert "--lr-decay-iters 5: the LR decays over --train-iters (10)" in capsys.readouterr().err
    assert main([*common, "--lr-decay-iters", "10", "--lr-warmup-iters", "2"]) == 0
    assert '"lr_warmup_fraction": 0.2' in capsys.readouterr().out
