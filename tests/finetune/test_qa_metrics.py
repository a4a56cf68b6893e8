"""SQuAD v1.1 EM / F1 and BioASQ factoid scores and pooling, on hand-worked cases."""

from __future__ import annotations

import json

import pytest

from megabio.config import ConfigError
from megabio.finetune.bioasq import factoid_scores, load_golden, pool_nbest, scores_over_batches, submission
from megabio.finetune.squad_metrics import normalize_answer, squad_scores, token_f1


def test_squad_normalisation_and_scores():
    assert normalize_answer("  The  Cat, sat!  ") == "cat sat"
    assert normalize_answer("an apple theory") == "apple theory"  # articles only as words
    # "the cat sat" vs "a cat on the mat": tokens cat sat / cat on mat -> 1 common; P 1/2, R 1/3 -> F1 0.4
    assert token_f1("the cat sat", "a cat on the mat") == pytest.approx(0.4)
    gold = {"q1": ["Paris", "the city of Paris"], "q2": ["42"], "q3": ["blue whale"]}
    scores = squad_scores(gold, {"q1": "paris.", "q2": "41", "q3": "whale"})
    # q1 EM 1, F1 1; q2 0, 0; q3 EM 0, F1: whale vs blue whale -> P 1, R 1/2 -> 2/3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    assert squad_scores(gold, {})["f1"] == 0.0  # unanswered questions count 0


def test_bioasq_pooling_sums_case_insensitive_duplicates_and_keeps_five():
    nbest = {"q1_001": [{"text": "IL-6", "probability": 0.3}, {"text": "TNF", "probability": 0.5}],
             "q1_002": [{"text": "il-6", "probability": 0.4}, {"text": "", "probability": 0.9},
                        {"text": "x" * 101, "probability": 0.9}] + [{"text": f"a{i}", "probability": 0.01 * i}
                                                                    for i in range(6)]}
    pooled = pool_nbest(nbest)
    assert pooled["q1"][:2] == ["IL-6", "TNF"]  # 0.7 summed beats 0.5; the empty and long answers are dropped
    assert len(pooled["q1"]) == 5
    assert submission(pooled)["questions"][0]["exact_answer"][0] == ["IL-6"]
    with pytest.raises(ConfigError, match="lacks its snippet suffix"):
        pool_nbest({"q1": []}, "nbest.json")


def test_bioasq_factoid_scores_by_hand():
    golden = {"questions": [
        {"id": "a", "type": "factoid", "exact_answer": [["IL-6", "interleukin 6"]]},
        {"id": "b", "type": "factoid", "exact_answer": [["TNF"]]},
        {"id": "c", "type": "factoid", "exact_answer": [["p53"]]},
        {"id": "d", "type": "factoid", "exact_answer": [["BRCA1"]]},
        {"id": "y", "type": "yesno", "exact_answer": "yes"}]}
    submitted = {"questions": [
        {"id": "a", "exact_answer": [["Interleukin 6"], ["x"]]},         # rank 1 (case-insensitive synonym)
        {"id": "b", "exact_answer": [["x"], ["y"], ["tnf"]]},            # rank 3
        {"id": "c", "exact_answer": [["1"], ["2"], ["3"], ["4"], ["5"], ["p53"]]}]}  # sixth: ignored
    scores = factoid_scores(golden, submitted)  # d: no submission -> 0
    assert scores["questions"] == 4
    assert scores["strict_acc"] == pytest.approx(25.0)
    assert scores["lenient_acc"] == pytest.approx(50.0)
    assert scores["mrr"] == pytest.approx(100 * (1 + 1 / 3) / 4)
    with pytest.raises(ConfigError, match="no factoid questions"):
        factoid_scores({"questions": [golden["questions"][-1]]}, submitted, "golden.json")
    with pytest.raises(ConfigError, match="not a BioASQ submission"):
        factoid_scores(golden, [submitted])


def test_bioasq_batches_are_scored_apart_and_averaged_by_hand(tmp_path):
    def factoid(qid: str, answer: str) -> dict:
        return {"id": qid, "type": "factoid", "exact_answer": [[answer]]}

    batch1 = {"questions": [factoid("a", "IL-6"), factoid("b", "TNF")]}
    batch2 = {"questions": [factoid("c", "p53"), factoid("d", "BRCA1"), factoid("e", "EGFR"),
                            {"id": "y", "type": "yesno", "exact_answer": "yes"}]}
    submitted = {"questions": [{"id": "a", "exact_answer": [["il-6"]]},              # batch 1: rank 1
                               {"id": "b", "exact_answer": [["x"], ["y"], ["TNF"]]},  # rank 3
                               {"id": "e", "exact_answer": [["x"], ["egfr"]]}]}       # batch 2: rank 2; c, d 0
    paths = []
    for name, batch in (("7B1_golden.json", batch1), ("7B2_golden.json", batch2)):
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_text(json.dumps(batch))
    scores = scores_over_batches(load_golden(paths), submitted)
    # batch 1: strict 1/2, lenient 2/2, MRR (1 + 1/3)/2; batch 2: strict 0, lenient 1/3, MRR (1/2)/3
    assert scores["strict_acc"] == pytest.approx(100 * (1 / 2 + 0) / 2)
    assert scores["lenient_acc"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert scores["mrr"] == pytest.approx(100 * ((1 + 1 / 3) / 2 + (1 / 2) / 3) / 2)
    assert scores["questions"] == 5
    assert scores["batches"][paths[1]] == factoid_scores(batch2, submitted)
    # One file: its own scores, no batch breakdown; the same file twice is an error.
    assert scores_over_batches(load_golden(paths[:1]), submitted) == factoid_scores(batch1, submitted)
    with pytest.raises(ConfigError, match=r"7B1_golden\.json: golden file given twice"):
        load_golden([paths[0], paths[0]])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match=r"broken\.json: not a BioASQ golden JSON"):
        load_golden([paths[0], str(tmp_path / "broken.json")])
