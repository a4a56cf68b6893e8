"""Reading SQuAD v1.1 JSON, SQuAD predictions and BioASQ golden / submission files: each malformed item is
an error naming the file and where the item sits."""

from __future__ import annotations

import copy
import json

import pytest

from megabio.config import ConfigError
from megabio.finetune.bioasq import load_golden, read_submission
from megabio.finetune.qa_data import read_squad
from megabio.finetune.squad_metrics import read_predictions

GOOD = {"data": [{"title": "t", "paragraphs": [{"context": "Aspirin inhibits COX-1.", "qas": [
    {"id": "q_001", "question": "What does aspirin inhibit?", "answers": [{"text": "COX-1", "answer_start": 17}]}]}]}]}


def _qa(data: dict) -> dict:
    return data["data"][0]["paragraphs"][0]["qas"][0]


def _broken(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


CASES = {
    "data not a list": ({"data": {"a": 1}}, "not a SQuAD file (no `data` list of articles)"),
    "not JSON": ("{", "not a SQuAD JSON file"),
    "article not an object": ({"data": ["text"]}, "data[0] is not a JSON object"),
    "no context": (_broken(lambda d: d["data"][0]["paragraphs"][0].pop("context")),
                   "data[0].paragraphs[0] has no `context`"),
    "context not text": (_broken(lambda d: d["data"][0]["paragraphs"][0].update(context=5)),
                         "data[0].paragraphs[0]: `context` is 5, not a JSON string"),
    "no id": (_broken(lambda d: _qa(d).pop("id")), "data[0].paragraphs[0].qas[0] has no `id`"),
    "no question": (_broken(lambda d: _qa(d).pop("question")), "question 'q_001' has no `question`"),
    "answers not a list": (_broken(lambda d: _qa(d).update(answers="COX-1")),
                           "question 'q_001': `answers` is \"COX-1\", not a JSON list"),
    "no answer_start": (_broken(lambda d: _qa(d)["answers"][0].pop("answer_start")),
                        "question 'q_001', answer 'COX-1' has no `answer_start`"),
    "answer_start null": (_broken(lambda d: _qa(d)["answers"][0].update(answer_start=None)),
                          "`answer_start` is null, not a JSON number"),
    "answer_start not a number": (_broken(lambda d: _qa(d)["answers"][0].update(answer_start="x")),
                                  "answer_start 'x' is not a character offset"),
    "SQuAD v2 unanswerable": (_broken(lambda d: _qa(d).update(answers=[], is_impossible=True)),
                              "question 'q_001' has no answer (an unanswerable SQuAD v2.0 question"),
    "answer_start wrong": (_broken(lambda d: _qa(d)["answers"][0].update(answer_start=16)),
                           "answer_start 16 does not point at its answer 'COX-1'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_items_are_named(tmp_path, case):
    data, expected = CASES[case]
    path = tmp_path / "train.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))  # a string: the file's raw text
    with pytest.raises(ConfigError) as error:
        read_squad(path)
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)


def test_a_well_formed_file_reads_with_answer_start_as_number_or_digits(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(GOOD))
    (question,) = read_squad(path)
    assert (question.id, question.answers) == ("q_001", [("COX-1", 17)])
    path.write_text(json.dumps(_broken(lambda d: _qa(d)["answers"][0].update(answer_start="17"))))
    assert read_squad(path) == [question]


FILE_CASES = {  # reader, file content, expected message
    "predictions not an object": (read_predictions, ["a"], "not SQuAD predictions"),
    "prediction not text": (read_predictions, {"q_001": "COX-1", "q_002": 3}, "the prediction of 'q_002' is not"),
    "golden without questions": (lambda p: load_golden([p]), {"answers": []}, "not a BioASQ golden file"),
    "golden question without id": (lambda p: load_golden([p]), {"questions": [{"type": "factoid"}]},
                                   "questions[0] is not an object with a string `id`"),
    "golden factoid without answer": (lambda p: load_golden([p]), {"questions": [
        {"id": "a", "type": "factoid", "exact_answer": [["p53"]]}, {"id": "b", "type": "factoid"}]},
        "factoid question 'b' has no `exact_answer` text"),
    "submission a list": (read_submission, [{"id": "a"}], "not a BioASQ submission"),
    "submission question not an object": (read_submission, {"questions": ["a"]}, "questions[0] is not an object"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_malformed_answer_files_are_named(tmp_path, case):
    reader, content, expected = FILE_CASES[case]
    path = tmp_path / "file.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as error:
        reader(str(path))
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)


def test_well_formed_answer_files_read(tmp_path):
    path = tmp_path / "file.json"
    path.write_text(json.dumps({"q_001": "COX-1"}))
    assert read_predictions(path) == {"q_001": "COX-1"}
    submission = {"questions": [{"id": "a", "type": "factoid", "exact_answer": [["p53"], ["TP53"]]}]}
    path.write_text(json.dumps(submission))
    assert read_submission(str(path)) == submission
    assert load_golden([str(path)]) == {str(path): submission}
