"""Every `megabio` command, given each kind of bad input it reads (missing file, wrong format, refused
pickle, wrong shape, wrong vocabulary, unwritable output): exit code 2, one line on stderr naming the
problem, no traceback, and nothing half-written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from megabio.cli import main
from tests.finetune.helpers import tiny_checkpoint


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    text = root / "text.txt"
    text.write_text("Aspirin lowers fever. It is taken orally.\n" * 20, encoding="utf-8")
    iob = root / "data.tsv"
    iob.write_text("aspirin\tB-Chemical\nlowers\tO\n", encoding="utf-8")
    blocker = root / "a-file"
    blocker.write_text("")
    checkpoint = tiny_checkpoint(root)
    hf = root / "hf"
    from transformers import BertConfig, BertForPreTraining

    BertForPreTraining(BertConfig(vocab_size=23, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)).save_pretrained(hf)
    (hf / "vocab.txt").write_text((checkpoint / "vocab.txt").read_text())
    pickled = root / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((hf / "config.json").read_text())
    (pickled / "vocab.txt").write_text((checkpoint / "vocab.txt").read_text())
    torch.save({"args": argparse.Namespace(lr=1.0)}, pickled / "pytorch_model.bin")  # not plain tensors
    list_config = root / "list-config"
    list_config.mkdir()
    (list_config / "config.json").write_text("[1]")
    latin = root / "latin.tsv"
    latin.write_bytes("caf\xe9\tO\n".encode("latin-1"))
    squad = root / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Aspirin inhibits COX-1.", "qas": [
        {"id": "q_001", "question": "What?", "answers": [{"text": "COX-1", "answer_start": 17}]}]}]}]}))
    a_list = root / "list.json"
    a_list.write_text("[1]")
    golden = root / "golden.json"
    golden.write_text(json.dumps({"questions": [{"id": "q", "type": "factoid", "exact_answer": [["p53"]]}]}))
    return {"text": text, "iob": iob, "blocker": blocker, "checkpoint": checkpoint, "hf": hf, "pickled": pickled,
            "vocab": checkpoint / "vocab.txt", "missing": root / "missing.txt", "list_config": list_config,
            "latin": latin, "squad": squad, "list": a_list, "golden": golden}


def convert(source: str, fmt: str, output: Path) -> list[str]:
    return ["convert", "--from", fmt, "--to", "megabio", "--input", str(source), "--output", str(output)]


def evaluate(task: str, gold: Path, pred: Path) -> list[str]:
    return ["evaluate", task, "--gold", str(gold), "--pred", str(pred)]


CASES = {
    "model-info: unknown preset": (lambda p, o: ["model-info", "--preset", "3b"], "3b"),
    "vocab build: missing file": (lambda p, o: ["vocab", "build", "--input", str(p["missing"]), "--output-dir",
                                                str(o / "vocab")], "missing.txt"),
    "vocab build: unwritable output": (lambda p, o: ["vocab", "build", "--input", str(p["text"]), "--output-dir",
                                                     str(p["blocker"] / "vocab"), "--vocab-size", "60"], "a-file"),
    "vocab stats: missing vocabulary": (lambda p, o: ["vocab", "stats", "--vocab", str(p["missing"]), "--iob",
                                                      str(p["iob"])], "missing.txt"),
    "vocab stats: wrong format": (lambda p, o: ["vocab", "stats", "--vocab", str(p["vocab"]), "--iob",
                                                str(p["text"])], "text.txt"),
    "preprocess: missing file": (lambda p, o: ["preprocess", "--input", str(p["missing"]), "--vocab", str(p["vocab"]),
                                               "--output-prefix", str(o / "data")], "missing.txt"),
    "preprocess: missing vocabulary": (lambda p, o: ["preprocess", "--input", str(p["text"]), "--vocab",
                                                     str(p["missing"]), "--output-prefix", str(o / "data")],
                                       "missing.txt"),
    "preprocess: unwritable output": (lambda p, o: ["preprocess", "--input", str(p["text"]), "--vocab",
                                                    str(p["vocab"]), "--output-prefix",
                                                    str(p["blocker"] / "data")], "a-file"),
    "splitter train: missing file": (lambda p, o: ["splitter", "train", "--input", str(p["missing"]), "--output",
                                                   str(o / "punkt.json")], "missing.txt"),
    "splitter train: unwritable output": (lambda p, o: ["splitter", "train", "--input", str(p["text"]),
                                                        "--output", str(p["blocker"] / "punkt.json")], "a-file"),
    "convert: missing input": (lambda p, o: convert(p["missing"], "hf-bert", o / "out"), "missing.txt"),
    "convert: wrong format": (lambda p, o: convert(p["checkpoint"], "hf-bert", o / "out"), "config.json"),
    "convert: refused pickle": (lambda p, o: convert(p["pickled"], "hf-bert", o / "out"), "pytorch_model.bin"),
    "convert: wrong vocabulary": (lambda p, o: convert(p["hf"], "hf-megatron-bert", o / "out"), "model_type"),
    "convert: unwritable output": (lambda p, o: convert(p["hf"], "hf-bert", p["blocker"] / "out"), "a-file"),
    "convert: existing output": (lambda p, o: convert(p["hf"], "hf-bert", p["checkpoint"]), "exists"),
    "pretrain: missing data": (lambda p, o: ["pretrain", "--preset", "tiny", "--vocab-file", str(p["vocab"]),
                                             "--data-path", str(p["missing"])], "missing.txt"),
    "pretrain: wrong vocabulary": (lambda p, o: ["pretrain", "--init-from", str(p["checkpoint"]), "--vocab-file",
                                                 str(p["iob"]), "--data-path", str(p["missing"])], "data.tsv"),
    "finetune ner: wrong format": (lambda p, o: ["finetune", "ner", "--checkpoint", str(p["checkpoint"]),
                                                 "--train", str(p["text"]), "--dev", str(p["iob"]),
                                                 "--output-dir", str(o / "out")], "text.txt:1"),
    "finetune ner: not a checkpoint": (lambda p, o: ["finetune", "ner", "--checkpoint", str(p["iob"].parent / "x"),
                                                     "--train", str(p["iob"]), "--dev", str(p["iob"]),
                                                     "--output-dir", str(o / "out")], "x"),
    "predict ner: not a fine-tuned model": (lambda p, o: ["predict", "ner", "--model", str(p["checkpoint"]),
                                                          "--input", str(p["iob"])], "not a fine-tuned model"),
    "evaluate ner: wrong format": (lambda p, o: evaluate("ner", p["iob"], p["text"]), "text.txt"),
    "evaluate ner: not UTF-8": (lambda p, o: evaluate("ner", p["iob"], p["latin"]), "latin.tsv:1: not valid UTF-8"),
    "convert: config not an object": (lambda p, o: convert(p["list_config"], "hf-bert", o / "out"),
                                      "config.json: not a JSON object"),
    "evaluate squad: predictions not an object": (lambda p, o: evaluate("squad", p["squad"], p["list"]), "list.json"),
    "evaluate squad: not SQuAD": (lambda p, o: evaluate("squad", p["list"], p["squad"]), "list.json"),
    "evaluate bioasq: not a golden file": (lambda p, o: evaluate("bioasq", p["squad"], p["golden"]),
                                           "squad.json: not a BioASQ golden file"),
    "evaluate bioasq: not a submission": (lambda p, o: evaluate("bioasq", p["golden"], p["list"]),
                                          "list.json: not a BioASQ submission"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_line(inputs, tmp_path, capsys, case):
    argv, named = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    before = {p.name for p in inputs["text"].parent.iterdir()}
    code = main(argv(inputs, out))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and named in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not any(out.iterdir()), f"left behind: {list(out.iterdir())}"
    assert {p.name for p in inputs["text"].parent.iterdir()} == before
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*")), "a temporary file was left"


def test_refused_pickle_points_to_the_safe_ways(inputs, tmp_path, capsys):
    assert main(convert(inputs["pickled"], "hf-bert", tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "safetensors" in err and "--trust-checkpoint" in err and "weights_only=False" not in err


def test_json_output_of_model_info(capsys):
    assert main(["model-info", "--preset", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "tiny"
