"""conlleval entity F1 against seqeval's default mode (which uses conlleval's chunk tables) on random tag
sequences, and hand-worked cases."""

from __future__ import annotations

import random

import pytest

from megabio.finetune.conlleval import entities, entity_scores

seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval is a test dependency (pip install seqeval)")

TAGS = ["O", "B-Chem", "I-Chem", "B-Dis", "I-Dis", "B", "I"]


def random_sentences(rng: random.Random, count: int, tags: list[str]) -> list[list[str]]:
    return [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(count)]


@pytest.mark.parametrize("tags", [TAGS[:5], ["O", "B", "I"]], ids=["typed", "bare"])
def test_scores_equal_seqeval_default_mode_on_random_sequences(tags):
    rng = random.Random(7)
    for _ in range(10):
        gold = random_sentences(rng, 100, tags)
        predicted = [[rng.choice(tags) if rng.random() < 0.3 else t for t in s] for s in gold]
        ours = entity_scores(gold, predicted)
        assert ours.precision == pytest.approx(100 * seqeval.precision_score(gold, predicted))
        assert ours.recall == pytest.approx(100 * seqeval.recall_score(gold, predicted))
        assert ours.f1 == pytest.approx(100 * seqeval.f1_score(gold, predicted))


@pytest.mark.parametrize("tags, expected", [
    (["O", "I-D", "I-D", "O"], [("D", 1, 2)]),               # an orphan I- opens an entity
    (["I-D"], [("D", 0, 0)]),                                 # ... also at the sentence start
    (["B-D", "B-D"], [("D", 0, 0), ("D", 1, 1)]),             # B after B starts a new one
    (["B-D", "I-C"], [("D", 0, 0), ("C", 1, 1)]),             # a type change ends one and starts another
    (["O", "B-D", "I-D"], [("D", 1, 2)]),                     # an entity at the sentence end is closed
    (["B", "I", "O", "I"], [("", 0, 1), ("", 3, 3)]),        # bare tags have the empty type
])
def test_hand_worked_chunks(tags, expected):
    assert entities(tags) == expected


def test_hand_worked_scores():
    gold = [["B-D", "I-D", "O", "B-C"], ["O", "B-D"]]
    predicted = [["B-D", "I-D", "O", "B-D"], ["O", "I-D"]]  # D(0,1) right; C->D wrong type; I-D(1,1) right
    scores = entity_scores(gold, predicted)
    assert (scores.correct, scores.gold, scores.predicted) == (2, 3, 3)
    assert scores.f1 == pytest.approx(100 * 2 / 3)


def test_no_entities_scores_zero_not_nan():
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)
