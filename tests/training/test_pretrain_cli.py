"""`megabio pretrain`: --dry-run resolves the job without starting it; bad input fails before training."""

from __future__ import annotations

from megabio.cli import main
from tests.data.test_bert_dataset import VOCAB, random_corpus


def test_dry_run_prints_layout_and_memory(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert main(["pretrain", "--dry-run", "--preset", "1.2b", "--vocab-file", str(vocab), "--data-path", "x",
                 "--world-size", "16", "--tensor-model-parallel-size", "2", "--micro-batch-size", "8",
                 "--global-batch-size", "256", "--seq-length", "512", "--bf16"]) == 0
    out = capsys.readouterr().out
    assert "layout: world 16 = TP 2 x DP 8; 4 micro-batch(es)" in out and "GiB" in out


def test_bad_input_fails_before_training(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB[:100]) + "\n", encoding="utf-8")  # smaller than the data's ids
    prefix = random_corpus(tmp_path / "corpus", documents=20)
    common = ["pretrain", "--preset", "tiny", "--seq-length", "64", "--train-iters", "1"]
    assert main([*common, "--vocab-file", str(vocab), "--data-path", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([*common, "--vocab-file", str(vocab), "--data-path", str(prefix)]) == 2
    assert "preprocess the data with this vocabulary" in capsys.readouterr().err
    assert main([*common, "--vocab-file", str(vocab), "--data-path", str(prefix), "--global-batch-size", "9",
                 "--micro-batch-size", "2"]) == 2
    assert "global_batch_size 9" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*common, "--vocab-file", str(vocab), "--data-path", str(prefix), "--save",
                 str(blocker / "ckpt")]) == 2
    assert "not writable" in capsys.readouterr().err
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert main([*common, "--vocab-file", str(vocab), "--data-path", str(prefix), "--save", str(other)]) == 2
    assert "holds checkpoints of another vocabulary" in capsys.readouterr().err
