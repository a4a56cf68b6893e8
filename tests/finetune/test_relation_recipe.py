"""The RE recipe end to end on a tiny checkpoint: outputs and metric, entity markers, TP=2 equal to TP=1,
predict / evaluate round trips, the transformers export, and bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from megabio.cli import main
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.recipe import TaskFiles
from megabio.finetune.relation import evaluate_relations, finetune_relations, predict_relations
from megabio.parallel import initialize
from tests.distributed import run_distributed
from tests.finetune.helpers import synthetic_relations, tiny_checkpoint

CONFIG = FinetuneConfig(epochs=5, lr=1e-2, micro_batch_size=8, seq_length=32, fc_dropout=0.0, log_interval=1000)
# A gentler rate for the TP comparison: at 1e-2 the loss falls steeply, and float32
# rounding differences between one and two ranks (summation order) grow along that steep descent.
TP_CONFIG = dataclasses.replace(CONFIG, epochs=2, lr=2e-3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("re")
    files = TaskFiles(str(synthetic_relations(root / "train.tsv", 200, 1, header=True)),
                          str(synthetic_relations(root / "dev.tsv", 40, 2)),
                          str(synthetic_relations(root / "test.tsv", 40, 3)))
    return root, tiny_checkpoint(root), files


@pytest.fixture(scope="module", params=[False, True], ids=["cls", "markers"])
def run(setup, request):
    root, checkpoint, files = setup
    out = root / f"out-{request.param}"
    return out, finetune_relations(checkpoint, files, out, CONFIG, entity_markers=request.param, log=lambda _: None)


def test_outputs_and_scores(setup, run):
    _, _, files = setup
    out, metrics = run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["micro_f1"] == pytest.approx(metrics["micro_f1"]) and saved["micro_f1"] >= 50
    assert set(saved["per_class"]) == {"CPR:3", "CPR:4"} and len(saved["dev_micro_f1"]) == CONFIG.epochs
    assert saved["train_loss"][-1] < saved["train_loss"][0]
    assert saved["config"] == CONFIG.to_dict()  # the settings it ran with
    assert evaluate_relations(files.test, out / "predictions.tsv")["micro_f1"] == pytest.approx(saved["micro_f1"])
    assert predict_relations(out, files.test) == (out / "predictions.tsv").read_text()
    assert json.loads((out / "labels.json").read_text()) == ["CPR:3", "CPR:4", "false"]


def _tp2(checkpoint: str, files: TaskFiles, out: str) -> None:
    torch.set_num_threads(1)
    finetune_relations(checkpoint, files, out, TP_CONFIG, entity_markers=True,
                       state=initialize(tensor_model_parallel_size=2), log=lambda _: None)


def test_tp2_equals_tp1(setup):
    root, checkpoint, files = setup
    single = finetune_relations(checkpoint, files, root / "tp1", TP_CONFIG, entity_markers=True, log=lambda _: None)
    run_distributed(_tp2, 2, str(checkpoint), files, str(root / "tp2"))
    parallel = json.loads((root / "tp2" / "metrics.json").read_text())
    assert parallel["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    assert (root / "tp2" / "predictions.tsv").read_text() == (root / "tp1" / "predictions.tsv").read_text()


def test_export_to_transformers_sequence_classification(setup, tmp_path):
    transformers = pytest.importorskip("transformers")
    from megabio.convert import convert
    from megabio.finetune.checkpoints import load_task_model
    from megabio.finetune.re_data import encode, read_instances
    from megabio.finetune.relation import collate

    root, _checkpoint, files = setup
    out = root / "out-False"
    convert("megabio", "hf-megatron-bert", out / "model", tmp_path / "hf")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    model, tokenizer, task = load_task_model(out / "model")
    batch = collate(encode(read_instances(files.test)[:16], tokenizer, task["labels"], 32))
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"])
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["unknown_label", "columns", "no_placeholder", "empty"])
def test_bad_input(setup, tmp_path, capsys, case):
    _root, checkpoint, files = setup
    bad = tmp_path / "bad.tsv"
    text, expected, extra = {
        "unknown_label": ("1\t@CHEMICAL$ x @GENE$\tCPR:9\n", "bad.tsv:1: label 'CPR:9' does not occur", []),
        "columns": ("1\t@CHEMICAL$ x @GENE$\tfalse\n2\tonly two\n", "bad.tsv:2: 2 column(s)", []),
        "no_placeholder": ("1\tno entities here\tfalse\n", "bad.tsv:1: no entity placeholder", ["--entity-markers"]),
        "empty": ("", "bad.tsv: no instances", []),
    }[case]
    bad.write_text(text)
    out = tmp_path / "out"
    code = main(["finetune", "re", "--checkpoint", str(checkpoint), "--train", files.train, "--dev", str(bad),
                 "--output-dir", str(out), "--epochs", "1", *extra])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
