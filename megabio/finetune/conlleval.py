"""conlleval's entity-level precision, recall and F1.

Chunks follow conlleval's rules: an I- after O (or at a sentence start) opens an entity, a change of type
ends one and starts another, E-/S- (IOBES) are understood too; a predicted entity is correct only when its
(type, start, end) equals a gold one. Scores are micro over entities, in percent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TAG = re.compile(r"^([^-]*)-(.*)$")
Entity = tuple[str, int, int]
"""(type, first word, last word) within one sentence."""


def split_tag(tag: str) -> tuple[str, str]:
    """`B-Chemical` -> (`B`, `Chemical`); a bare `B`, `I` or `O` has the empty type."""
    match = _TAG.match(tag)
    return (match.group(1), match.group(2)) if match else (tag, "")


def _ends(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    return (prev in ("E", "S")
            or (prev in ("B", "I") and tag in ("B", "S", "O"))
            or (prev not in ("O", ".") and prev_type != type_))


def _starts(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    return (tag in ("B", "S")
            or (prev in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_))


def entities(tags: Sequence[str]) -> list[Entity]:
    """The entities of one sentence's tags, by conlleval's chunk rules."""
    found: list[Entity] = []
    prev, prev_type, start = "O", "", None
    for i, full in enumerate([*tags, "O"]):  # the trailing O closes an entity at the sentence end
        tag, type_ = split_tag(full)
        if start is not None and _ends(prev, prev_type, tag, type_):
            found.append((prev_type, start, i - 1))
            start = None
        if _starts(prev, prev_type, tag, type_):
            start = i
        prev, prev_type = tag, type_
    return found


@dataclass(frozen=True)
class EntityScores:
    precision: float
    recall: float
    f1: float
    gold: int
    predicted: int
    correct: int

    def as_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "gold_entities": self.gold,
                "predicted_entities": self.predicted, "correct_entities": self.correct}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> EntityScores:
    """Micro P/R/F1 (percent; 0 where a denominator is 0) over sentences of gold and predicted tags."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    n_gold = n_pred = n_correct = 0
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, predicted, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {index + 1}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        gold_set, pred_set = set(entities(gold_tags)), set(entities(pred_tags))
        n_gold += len(gold_set)
        n_pred += len(pred_set)
        n_correct += len(gold_set & pred_set)
    precision = 100.0 * n_correct / n_pred if n_pred else 0.0
    recall = 100.0 * n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EntityScores(precision, recall, f1, n_gold, n_pred, n_correct)
