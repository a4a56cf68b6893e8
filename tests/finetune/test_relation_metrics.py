"""Micro P/R/F1 over the positive classes against scikit-learn, on random labels and a hand-worked case."""

from __future__ import annotations

import random

import pytest

from megabio.finetune.classification_metrics import micro_scores

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is a test dependency")
LABELS = ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false"]


def test_equals_scikit_learn_micro_over_positive_classes():
    rng = random.Random(3)
    positives = LABELS[:5]
    for _ in range(50):
        gold = [rng.choice(LABELS) for _ in range(rng.randint(1, 300))]
        predicted = [g if rng.random() < 0.5 else rng.choice(LABELS) for g in gold]
        ours = micro_scores(gold, predicted, "false")
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(gold, predicted, labels=positives,
                                                                     average="micro", zero_division=0)
        assert (ours["precision"], ours["recall"], ours["micro_f1"]) == pytest.approx((100 * p, 100 * r, 100 * f))
        for label in positives:
            if label in gold or label in predicted:
                *_, fc, _ = sklearn_metrics.precision_recall_fscore_support(gold, predicted, labels=[label],
                                                                            average="micro", zero_division=0)
                assert ours["per_class"][label]["f1"] == pytest.approx(100 * fc)


def test_hand_worked_case():
    gold = ["CPR:3", "CPR:4", "false", "false", "CPR:4"]
    predicted = ["CPR:3", "false", "CPR:4", "false", "CPR:4"]
    # positives predicted 3 (CPR:3, CPR:4, CPR:4), correct 2; gold positives 3 -> P = R = F = 2/3
    scores = micro_scores(gold, predicted, "false")
    assert scores["precision"] == pytest.approx(200 / 3) and scores["recall"] == pytest.approx(200 / 3)
    assert scores["per_class"]["CPR:4"] == pytest.approx({"precision": 50.0, "recall": 50.0, "f1": 50.0,
                                                         "support": 2})
    assert "false" not in scores["per_class"]


def test_without_a_negative_class_micro_f1_is_accuracy():
    gold, predicted = ["a", "b", "b", "c"], ["a", "b", "c", "c"]
    assert micro_scores(gold, predicted, None)["micro_f1"] == pytest.approx(75.0)
