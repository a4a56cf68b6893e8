"""Bad input to `megabio finetune ner` / `evaluate ner` / `predict ner`: one line naming the file, line or
flag, exit code 2, and nothing written where the results belong."""

from __future__ import annotations

import pytest

from megabio.cli import main
from tests.finetune.helpers import synthetic_iob, tiny_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    return root, tiny_checkpoint(root), synthetic_iob(root / "train.tsv", 10, 1), synthetic_iob(root / "dev.tsv", 5, 2)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def finetune(root, checkpoint, train, dev, out, *extra):
    return ["finetune", "ner", "--checkpoint", str(checkpoint), "--train", str(train), "--dev", str(dev),
            "--output-dir", str(out), "--epochs", "1", "--seq-length", "32", *extra]


@pytest.mark.parametrize("case", ["columns", "empty_tag", "unseen_tag", "empty_file", "vocabulary",
                                  "output_parent", "checkpoint"])
def test_bad_input_is_one_clear_line_and_leaves_nothing(data, tmp_path, capsys, case):
    root, checkpoint, train, dev = data
    out = tmp_path / "out"
    argv, expected = {
        "columns": (finetune(root, checkpoint, write(tmp_path / "t1.tsv", "the\tO\nx\tO\tO\n"), dev, out),
                    "t1.tsv:2: expected `token<TAB>tag`, got 3 column"),
        "empty_tag": (finetune(root, checkpoint, write(tmp_path / "t2.tsv", "the\t\n"), dev, out),
                      "t2.tsv:1: empty tag"),
        "unseen_tag": (finetune(root, checkpoint, train, write(tmp_path / "d.tsv", "the\tO\nx\tB-Gene\n"), out),
                       "d.tsv:2: tag 'B-Gene' does not occur in the training data"),
        "empty_file": (finetune(root, checkpoint, write(tmp_path / "t3.tsv", ""), dev, out), "t3.tsv: no sentences"),
        "vocabulary": (finetune(root, checkpoint, train, dev, out, "--vocab-file",
                                str(write(tmp_path / "v.txt", "[PAD]\n[UNK]\n"))),
                       "v.txt has 2 tokens, the checkpoint's"),
        "output_parent": (finetune(root, checkpoint, train, dev, tmp_path / "missing" / "out"),
                          "missing does not exist"),
        "checkpoint": (finetune(root, tmp_path / "nothing", train, dev, out), "nothing"),
    }[case]
    code, err = run(capsys, *argv)
    assert code == 2
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_existing_output_needs_overwrite(data, tmp_path, capsys):
    root, checkpoint, train, dev = data
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("results of another run")
    code, err = run(capsys, *finetune(root, checkpoint, train, dev, out))
    assert code == 2 and "not empty" in err and (out / "keep.txt").is_file()


def test_evaluate_misaligned_predictions_names_the_line(data, tmp_path, capsys):
    _, _, _, dev = data
    pred = write(tmp_path / "p.conll", "other O O\n")
    code, err = run(capsys, "evaluate", "ner", "--gold", str(dev), "--pred", str(pred))
    assert code == 2 and "p.conll:1" in err


def test_predict_with_a_pretrained_checkpoint_says_it_is_not_fine_tuned(data, tmp_path, capsys):
    _, checkpoint, _, dev = data
    code, err = run(capsys, "predict", "ner", "--model", str(checkpoint), "--input", str(dev))
    assert code == 2 and "not a fine-tuned model" in err
