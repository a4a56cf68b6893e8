"""The QA recipe end to end on a tiny checkpoint: contexts longer than the sequence cut into windows, every
question answered, SQuAD and BioASQ scores that agree with the evaluate commands, and bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest

from megabio.cli import main
from megabio.finetune.config import FinetuneConfig, SpanSettings
from megabio.finetune.qa import finetune_qa
from megabio.finetune.qa_data import make_features, read_squad
from megabio.finetune.recipe import TaskFiles
from megabio.tokenizer.wordpiece import load_wordpiece
from tests.finetune.helpers import synthetic_squad, tiny_checkpoint

CONFIG = FinetuneConfig(epochs=3, lr=1e-2, micro_batch_size=16, seq_length=32, fc_dropout=0.0, log_interval=1000)
SETTINGS = SpanSettings(doc_stride=8, max_query_length=8)
TP_CONFIG = dataclasses.replace(CONFIG, epochs=1, lr=5e-4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    checkpoint = tiny_checkpoint(root)
    files = TaskFiles(str(synthetic_squad(root / "train.json", 200, 1)), str(synthetic_squad(root / "dev.json", 30, 2)),
                      str(synthetic_squad(root / "test.json", 30, 3, answers=False)))
    answered = read_squad(synthetic_squad(root / "test-answers.json", 30, 3))  # the same questions, answered
    golden = root / "golden.json"
    gold_answers = {q.id.rsplit("_", 1)[0]: q.answers[0][0] for q in answered}
    golden.write_text(json.dumps({"questions": [{"id": qid, "type": "factoid", "exact_answer": [[answer]]}
                                                for qid, answer in gold_answers.items()]}))
    metrics = finetune_qa(checkpoint, files, root / "out", CONFIG, SETTINGS, str(golden), log=lambda _: None)
    return root, checkpoint, files, golden, metrics


def test_long_contexts_are_windowed_and_every_question_answered(run):
    root, checkpoint, files, _, _ = run
    tokenizer = load_wordpiece(checkpoint / "vocab.txt", lower_case=True)
    questions = read_squad(files.test, require_answers=False)
    features = make_features(questions, tokenizer, 32, 8, 8)
    assert len(features) > len(questions) and all(len(f.input_ids) <= 32 for f in features)
    for index in range(len(questions)):  # each context token is read from exactly one window
        windows = [f for f in features if f.question == index]
        tokens = [f.context_offsets[t] for f in windows for t in f.max_context]
        assert len(tokens) == len(set(tokens)) == len(set(o for f in windows for o in f.context_offsets.values()))
    predictions = json.loads((root / "out" / "predictions.json").read_text())
    assert set(predictions) == {q.id for q in questions}
    nbest = json.loads((root / "out" / "nbest.json").read_text())
    assert all(len(top) <= SETTINGS.n_best and abs(sum(a["probability"] for a in top) - 1) < 1e-6
               for top in nbest.values())


def test_scores_agree_with_the_evaluate_commands(run, capsys):
    root, _, _, golden, metrics = run
    assert metrics["bioasq"]["strict_acc"] > 50 and max(metrics["dev_f1"]) > 50
    assert main(["evaluate", "bioasq", "--gold", str(golden), "--pred",
                 str(root / "out" / "bioasq_submission.json")]) == 0
    assert json.loads(capsys.readouterr().out)["mrr"] == pytest.approx(metrics["bioasq"]["mrr"])


def test_predict_answers_as_the_run_did(run, tmp_path, capsys):
    root, checkpoint, files, golden, metrics = run
    out = tmp_path / "predicted"
    assert main(["predict", "qa", "--model", str(root / "out"), "--input", files.test, "--golden", str(golden),
                 "--output-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["bioasq"] == pytest.approx(metrics["bioasq"])
    for name in ("predictions.json", "bioasq_submission.json"):
        assert json.loads((out / name).read_text()) == json.loads((root / "out" / name).read_text())
    ours, theirs = (json.loads((path / "nbest.json").read_text()) for path in (out, root / "out"))
    assert {q: [a["text"] for a in top] for q, top in ours.items()} == {q: [a["text"] for a in top]
                                                                         for q, top in theirs.items()}
    assert [a["probability"] for top in ours.values() for a in top] == pytest.approx(
        [a["probability"] for top in theirs.values() for a in top])
    # --bioasq without a golden file: the submission alone; a non-empty output directory is refused.
    assert main(["predict", "qa", "--model", str(root / "out" / "model"), "--input", files.test, "--bioasq",
                 "--output-dir", str(tmp_path / "submission")]) == 0
    assert json.loads(capsys.readouterr().out) == {}
    assert (tmp_path / "submission" / "bioasq_submission.json").read_bytes() == (
        out / "bioasq_submission.json").read_bytes()
    assert main(["predict", "qa", "--model", str(root / "out"), "--input", files.test, "--output-dir", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["predict", "qa", "--model", str(checkpoint), "--input", files.test,
                 "--output-dir", str(tmp_path / "none")]) == 2
    assert "not a fine-tuned model" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_evaluate_bioasq_reports_each_batch_and_their_mean(run, capsys):
    root, _, _, golden, _ = run
    questions = json.loads(golden.read_text())["questions"]
    batches = [root / "batch1.json", root / "batch2.json"]
    for path, part in zip(batches, (questions[:10], questions[10:]), strict=True):
        path.write_text(json.dumps({"questions": part}))
    prediction = str(root / "out" / "bioasq_submission.json")
    per_batch = []
    for path in batches:
        assert main(["evaluate", "bioasq", "--gold", str(path), "--pred", prediction]) == 0
        per_batch.append(json.loads(capsys.readouterr().out))
    assert main(["evaluate", "bioasq", "--gold", *map(str, batches), "--pred", prediction]) == 0
    scores = json.loads(capsys.readouterr().out)
    for name in ("strict_acc", "lenient_acc", "mrr"):
        assert scores[name] == pytest.approx((per_batch[0][name] + per_batch[1][name]) / 2)
        assert scores["batches"][str(batches[1])][name] == pytest.approx(per_batch[1][name])


@pytest.mark.parametrize("case", ["answer_start", "suffix", "no_factoid", "empty"])
def test_bad_input(run, tmp_path, capsys, case):
    _, checkpoint, files, golden, _ = run
    bad = tmp_path / "bad.json"
    dev, test, extra = files.dev, files.test, ["--golden", str(golden)]
    if case == "answer_start":
        data = json.loads(open(files.dev).read())
        data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
        bad.write_text(json.dumps(data))
        dev, expected = str(bad), "answer_start"
    elif case == "suffix":
        data = json.loads(open(files.test).read())
        data["data"][0]["paragraphs"][0]["qas"][0]["id"] = "no-suffix"
        bad.write_text(json.dumps(data))
        test, expected = str(bad), "'no-suffix' lacks its snippet suffix"
    elif case == "no_factoid":
        bad.write_text(json.dumps({"questions": [{"id": "x", "type": "yesno", "exact_answer": "yes"}]}))
        extra, expected = ["--golden", str(bad)], "no factoid questions"
    else:
        bad.write_text(json.dumps({"data": []}))
        dev, expected = str(bad), "no questions"
    out = tmp_path / "out"
    code = main(["finetune", "qa", "--checkpoint", str(checkpoint), "--train", files.train, "--dev", dev,
                 "--test", test, "--output-dir", str(out), "--epochs", "1", "--seq-length", "32", *extra])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err and str(bad.name) in err, err
    assert not out.exists()


def _tp2(checkpoint: str, files: TaskFiles, out: str) -> None:
    import torch

    from megabio.parallel import initialize

    torch.set_num_threads(1)
    finetune_qa(checkpoint, files, out, TP_CONFIG, SETTINGS, state=initialize(tensor_model_parallel_size=2),
                log=lambda _: None)


def test_tp2_equals_tp1(run):
    from tests.distributed import run_distributed

    root, checkpoint, files, _, _ = run
    single = finetune_qa(checkpoint, files, root / "tp1", TP_CONFIG, SETTINGS, log=lambda _: None)
    run_distributed(_tp2, 2, str(checkpoint), files, str(root / "tp2"))
    parallel = json.loads((root / "tp2" / "metrics.json").read_text())
    assert parallel["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    assert (root / "tp2" / "predictions.json").read_text() == (root / "tp1" / "predictions.json").read_text()
