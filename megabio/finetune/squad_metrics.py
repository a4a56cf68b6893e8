"""SQuAD v1.1 exact match and F1, as the official evaluation script defines them: answers are normalised
(lower case, punctuation removed, the articles a / an / the removed, white space collapsed), F1 is the
token overlap, and a question's score is the maximum over its gold answers. Percent."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from megabio.config import ConfigError
from megabio.io.text import read_json

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """{"exact_match", "f1"} over every question of `gold` (id -> answer texts); one without a prediction
    scores 0."""
    if not gold:
        raise ValueError("no gold questions to score")
    em = f1 = 0.0
    for qid, answers in gold.items():
        if qid in predictions:
            em += max(exact_match(predictions[qid], a) for a in answers)
            f1 += max(token_f1(predictions[qid], a) for a in answers)
    return {"exact_match": 100.0 * em / len(gold), "f1": 100.0 * f1 / len(gold)}


def read_predictions(path: str | Path) -> dict[str, str]:
    """A SQuAD predictions file (`predictions.json`: question id -> answer text); errors name the file."""
    predictions = read_json(path, "SQuAD predictions")
    if not isinstance(predictions, dict):
        raise ConfigError(f"{path}: not SQuAD predictions (a JSON object of question id -> answer text)")
    if bad := next((qid for qid, text in predictions.items() if not isinstance(text, str)), None):
        raise ConfigError(f"{path}: the prediction of {bad!r} is not a string")
    return predictions
