"""The NER recipe end to end on a tiny checkpoint: outputs, TP=2 equal to TP=1, predict and evaluate
round trips, and the transformers export giving the same predictions."""

from __future__ import annotations

import json

import pytest
import torch

from megabio.finetune.config import FinetuneConfig
from megabio.finetune.ner import evaluate_ner, finetune_ner, predict_ner
from megabio.finetune.ner_data import read_conll
from megabio.finetune.recipe import TaskFiles
from megabio.parallel import initialize
from tests.distributed import run_distributed
from tests.finetune.helpers import synthetic_iob, tiny_checkpoint

CONFIG = FinetuneConfig(epochs=3, lr=1e-2, micro_batch_size=8, seq_length=24, fc_dropout=0.0, log_interval=1000)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    files = TaskFiles(str(synthetic_iob(root / "train.tsv", 160, seed=1, long_sentence=70)),
                     str(synthetic_iob(root / "dev.tsv", 20, seed=2, long_sentence=40)),
                     str(synthetic_iob(root / "test.tsv", 20, seed=3)))
    return root, tiny_checkpoint(root), files


@pytest.fixture(scope="module")
def single_run(setup):
    root, checkpoint, files = setup
    out = root / "out-tp1"
    metrics = finetune_ner(checkpoint, files, out, CONFIG, log=lambda _: None)
    return out, metrics


def test_writes_metrics_predictions_and_model(setup, single_run):
    _, _, files = setup
    out, _ = single_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["evaluated_on"] == "test" and len(saved["dev_f1"]) == CONFIG.epochs
    assert {"precision", "recall", "f1"} <= set(saved)
    assert saved["train_loss"][-1] < saved["train_loss"][0]  # it learns
    assert saved["f1"] > 50  # chemicals are easy
    test = read_conll(files.test)
    predicted = read_conll(out / "predictions.conll", require_tags=False)
    assert [s.words for s in predicted] == [s.words for s in test]  # every word exactly once, in order
    assert evaluate_ner(files.test, out / "predictions.conll")["f1"] == pytest.approx(saved["f1"])
    assert (out / "model" / "vocab.txt").is_file() and json.loads((out / "labels.json").read_text())[0] == "O"
    assert not list(out.parent.glob(".*partial"))


def test_predict_tags_conll_and_raw_text_like_the_run(setup, single_run, tmp_path):
    _, _, files = setup
    out, _ = single_run
    assert predict_ner(out, files.test) == (out / "predictions.conll").read_text()
    raw = tmp_path / "raw.txt"
    raw.write_text("the patient was given aspirin acid for pain\nnaloxone and clonidine\n")
    lines = [line.split("\t") for line in predict_ner(out, raw).splitlines() if line]
    assert [w for w, _ in lines] == "the patient was given aspirin acid for pain naloxone and clonidine".split()


def _tp2_run(checkpoint: str, files: TaskFiles, out: str) -> None:
    torch.set_num_threads(1)
    finetune_ner(checkpoint, files, out, CONFIG, state=initialize(tensor_model_parallel_size=2), log=lambda _: None)


def test_tp2_finetuning_equals_tp1(setup, single_run):
    root, checkpoint, files = setup
    out, metrics = single_run
    run_distributed(_tp2_run, 2, str(checkpoint), files, str(root / "out-tp2"))
    parallel = json.loads((root / "out-tp2" / "metrics.json").read_text())
    # float32 rounding differs between the split and the whole GEMMs and grows over the epochs' steps (to a
    # few 1e-5 of a loss falling below 0.1 at this steep rate)
    assert parallel["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-4, abs=5e-5)
    assert parallel["dev_f1"] == pytest.approx(metrics["dev_f1"])
    assert (root / "out-tp2" / "predictions.conll").read_text() == (out / "predictions.conll").read_text()


def test_export_to_transformers_gives_the_same_predictions(setup, single_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from megabio.convert import convert
    from megabio.finetune.checkpoints import load_task_model
    from megabio.finetune.ner import collate
    from megabio.finetune.ner_data import encode

    _, _, files = setup
    out, _ = single_run
    convert("megabio", "hf-megatron-bert", out / "model", tmp_path / "hf")
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "MegatronBertForTokenClassification"
    model, tokenizer, task = load_task_model(out / "model")
    assert hf.config.id2label == dict(enumerate(task["labels"]))
    batch = collate(encode(read_conll(files.test), tokenizer, task["labels"], 24)[:16])
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"])
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-4, atol=1e-4)
    assert torch.equal(ours[mask].argmax(-1), theirs[mask].argmax(-1))


def test_cli_under_torchrun_with_tp2(setup, single_run):
    from tests.training.test_launch import launch, torchrun

    root, checkpoint, files = setup
    out = root / "out-torchrun"
    code, lines = launch(torchrun("--standalone", "--nproc-per-node", "2", "-m", "megabio", "finetune", "ner",
                                  "--checkpoint", str(checkpoint), "--train", files.train, "--dev", files.dev,
                                  "--test", files.test, "--output-dir", str(out), "--tensor-model-parallel-size",
                                  "2", "--epochs", "3", "--lr", "1e-2", "--micro-batch-size", "8",
                                  "--seq-length", "24", "--fc-dropout", "0"))
    assert code == 0, "\n".join(lines)
    assert "TP=2" in "\n".join(lines)
    ours = json.loads((out / "metrics.json").read_text())
    assert ours["f1"] == pytest.approx(single_run[1]["f1"])
