"""Micro precision, recall and F1 over the positive classes (the negative class left out), the ChemProt
metric of BioBERT / BLUE / BLURB: a prediction of the negative class is no prediction, a gold negative is
no gold relation. Percent; 0 where a denominator is 0."""

from __future__ import annotations

from collections.abc import Sequence


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold}


def micro_scores(gold: Sequence[str], predicted: Sequence[str], negative: str | None = "false") -> dict:
    """{"precision", "recall", "micro_f1", "per_class": {label: {precision, recall, f1, support}}} over
    every label but `negative` (None: every label counts, and micro F1 equals accuracy)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    positives = sorted({*gold, *predicted} - {negative})
    per_class = {}
    for label in positives:
        correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p == label)
        per_class[label] = _prf(correct, sum(p == label for p in predicted), sum(g == label for g in gold))
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p and g != negative)
    total = _prf(correct, sum(p != negative for p in predicted), sum(g != negative for g in gold))
    return {"precision": total["precision"], "recall": total["recall"], "micro_f1": total["f1"],
            "per_class": per_class}
