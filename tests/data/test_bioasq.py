"""`megabio data bioasq`: BioASQ question JSON to SQuAD v1.1, one question per snippet, on hand-made files."""

from __future__ import annotations

import json

import pytest

from megabio.cli import main
from megabio.data.bioasq import build_bioasq, find_answer
from megabio.finetune.bioasq import question_id
from megabio.finetune.qa_data import read_squad
from tests.shared_data import shared_data

QUESTIONS = {"questions": [
    {"id": "5be48c39133db5eb7800001d", "type": "factoid", "body": "Which cytokine rises in sepsis?",
     "exact_answer": [["interleukin 6", "IL-6"], ["IL-6 receptor"]],
     "snippets": [{"text": "Serum il-6 receptor and IL-6 rose early."},
                  {"text": "No cytokine was measured."},
                  {"text": "Levels of Interleukin 6 predicted death; IL-6 too."}]},
    {"id": "5be48c39133db5eb7800001e", "type": "list", "body": "List genes.", "exact_answer": [["a"]],
     "snippets": [{"text": "a and b"}]},
    {"id": "5be48c39133db5eb7800001f", "type": "factoid", "body": "What is p53?",
     "exact_answer": [["a tumour suppressor"]], "snippets": [{"text": "Nothing here."}]},
]}


def _write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def test_earliest_then_longest_synonym_with_the_contexts_casing():
    assert find_answer("Serum il-6 receptor and IL-6 rose.", ["IL-6", "IL-6 receptor"]) == ("il-6 receptor", 6)
    assert find_answer("x", ["y", ""]) is None


def test_a_test_batch_keeps_every_snippet_of_every_factoid_question(tmp_path):
    source = _write(tmp_path, "batch.json", QUESTIONS)
    counts = build_bioasq([source], tmp_path / "test.json")
    assert counts == {"questions": 2, "snippets": 4}
    questions = read_squad(tmp_path / "test.json", require_answers=False)
    assert [q.id for q in questions] == [f"5be48c39133db5eb7800001d_00{n}" for n in (1, 2, 3)] + \
        ["5be48c39133db5eb7800001f_001"]
    assert [q.context for q in questions[:3]] == [s["text"] for s in QUESTIONS["questions"][0]["snippets"]]
    assert {q.question for q in questions[:3]} == {"Which cytokine rises in sepsis?"}
    assert all(not q.answers for q in questions)
    assert {question_id(q.id) for q in questions} == {"5be48c39133db5eb7800001d", "5be48c39133db5eb7800001f"}


def test_a_training_set_marks_answers_and_leaves_out_snippets_without_one(tmp_path):
    source = _write(tmp_path, "train.json", QUESTIONS)
    counts = build_bioasq([source], tmp_path / "train-squad.json", with_answers=True)
    assert counts == {"questions": 2, "snippets": 2, "snippets_without_answer": 2, "questions_without_answer": 1}
    questions = read_squad(tmp_path / "train-squad.json")  # checks every answer_start against its text
    assert [(q.id, q.answers) for q in questions] == [
        ("5be48c39133db5eb7800001d_001", [("il-6 receptor", 6)]),  # numbering keeps the left-out snippet's gap
        ("5be48c39133db5eb7800001d_003", [("Interleukin 6", 10)])]


def test_several_files_are_written_as_one_in_order(tmp_path):
    first = _write(tmp_path, "a.json", {"questions": QUESTIONS["questions"][:1]})
    second = _write(tmp_path, "b.json", {"questions": QUESTIONS["questions"][2:]})
    assert build_bioasq([first, second], tmp_path / "out.json")["questions"] == 2
    assert [q.id[:-4] for q in read_squad(tmp_path / "out.json", require_answers=False)][-1] == \
        "5be48c39133db5eb7800001f"


def _no_body(data):
    data["questions"][0].pop("body")


def _snippet_without_text(data):
    data["questions"][0]["snippets"][1] = {"document": "x"}


def _no_exact_answer(data):
    data["questions"][0].pop("exact_answer")


BAD = {
    "not BioASQ": (lambda d: d.clear(), [], "not a BioASQ question file"),
    "no body": (_no_body, [], "question '5be48c39133db5eb7800001d' has no `body`"),
    "snippet without text": (_snippet_without_text, [], "'5be48c39133db5eb7800001d', snippet 2 has no `text`"),
    "training without answers": (_no_exact_answer, ["--with-answers"], "has no `exact_answer` text"),
    "no factoid": (lambda d: d.update(questions=QUESTIONS["questions"][1:2]), [], "no factoid questions"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_named_and_nothing_is_written(tmp_path, capsys, case):
    change, flags, expected = BAD[case]
    data = json.loads(json.dumps(QUESTIONS))
    change(data)
    source = _write(tmp_path, "bad.json", data)
    assert main(["data", "bioasq", "--input", source, "--output", str(tmp_path / "out.json"), *flags]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and expected in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_a_question_in_two_files_and_an_existing_output_are_refused(tmp_path, capsys):
    source = _write(tmp_path, "a.json", QUESTIONS)
    again = _write(tmp_path, "b.json", {"questions": QUESTIONS["questions"][:1]})
    out = tmp_path / "out.json"
    assert main(["data", "bioasq", "--input", source, again, "--output", str(out)]) == 2
    assert "'5be48c39133db5eb7800001d' is also in" in capsys.readouterr().err and not out.exists()
    assert main(["data", "bioasq", "--input", source, "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "bioasq", "--input", source, "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "bioasq", "--input", source, "--output", str(out), "--overwrite"]) == 0


def test_the_7b_golden_file_gives_the_shared_test_files_snippet_questions(tmp_path):
    """BioBERT's SQuAD-format 7b test file was made from the Phase B test input, whose snippet lists the
    golden file mostly repeats: the same ids must carry the same question and, nearly always, context."""
    folder = shared_data("qa", "BioASQ-7b")
    build_bioasq([folder / "7B_golden.json"], tmp_path / "test.json")
    ours = {q.id: q for q in read_squad(tmp_path / "test.json", require_answers=False)}
    released = read_squad(folder / "BioASQ-test-factoid-7b.json", require_answers=False)
    shared = [q for q in released if q.id in ours]
    assert len(shared) >= 0.99 * len(released)
    assert all(ours[q.id].question == q.question for q in shared)
    assert sum(ours[q.id].context == q.context for q in shared) >= 0.99 * len(released)
    assert {question_id(q.id) for q in released} == {question_id(i) for i in ours}
