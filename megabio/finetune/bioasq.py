"""BioASQ factoid answers from span-extraction n-best lists, and their official scores.

Pooling (BioBERT's transformation): a question is asked once per snippet (ids `<question>_<nnn>`); the
n-best answers of all its snippets are pooled, empty and over-long strings dropped, the probabilities of
answers equal up to case summed, and the five most probable kept, as BioASQ's submission JSON
(`{"questions": [{"id", "type": "factoid", "exact_answer": [[a1], [a2], ...]}]}`).

Scores (BioASQ's evaluator, factoid): everything lower-cased; strict accuracy when the first answer equals
a gold synonym, lenient accuracy when any of the first five does, MRR = 1 / rank of the first match; a
gold factoid question without a submission scores 0; answers past the fifth are ignored. Percent.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from megabio.config import ConfigError
from megabio.data.bioasq import bioasq_questions, synonyms
from megabio.io.text import read_json

MAX_ANSWERS = 5
MAX_ANSWER_CHARS = 100
SCORES = ("strict_acc", "lenient_acc", "mrr")
_SNIPPET_ID = re.compile(r"^(.+)_(\d{3})$")


def question_id(snippet_id: str, where: str = "") -> str:
    """`<question>_<nnn>` -> `<question>`."""
    match = _SNIPPET_ID.match(snippet_id)
    if match is None:
        raise ConfigError(f"{where}: question id {snippet_id!r} lacks its snippet suffix `_<nnn>` (BioASQ "
                          f"questions are asked once per snippet)")
    return match.group(1)


def pool_nbest(nbest: Mapping[str, Sequence[Mapping[str, Any]]], where: str = "") -> dict[str, list[str]]:
    """question id -> its top answers, from snippet id -> [{"text", "probability"}, ...]."""
    pooled: dict[str, dict[str, list]] = defaultdict(dict)
    for snippet_id, candidates in nbest.items():
        answers = pooled[question_id(snippet_id, where)]
        for candidate in candidates:
            text = candidate["text"].strip()
            if not text or len(text) > MAX_ANSWER_CHARS:
                continue
            key = text.lower()
            if key in answers:
                answers[key][1] += candidate["probability"]
            else:
                answers[key] = [text, candidate["probability"]]
    return {qid: [text for text, _ in sorted(answers.values(), key=lambda a: -a[1])[:MAX_ANSWERS]]
            for qid, answers in pooled.items()}


def submission(answers: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {"questions": [{"id": qid, "type": "factoid", "exact_answer": [[a] for a in top]}
                          for qid, top in answers.items()]}


def _submitted(exact_answer: Any) -> list[str]:
    """A submission's answers in rank order: the first element of each inner list, lower-cased."""
    answers = []
    for item in exact_answer if isinstance(exact_answer, list) else []:
        first = item[0] if isinstance(item, list) and item else item
        if isinstance(first, str):
            answers.append(first.lower())
    return answers[:MAX_ANSWERS]


def factoid_scores(golden: Mapping[str, Any], submitted: Mapping[str, Any], where: str = "") -> dict[str, float]:
    """{"strict_acc", "lenient_acc", "mrr", "questions"} of a submission against a golden file (both JSON;
    `where` names the golden file in errors)."""
    gold = {q["id"]: {text.lower() for text in synonyms(q.get("exact_answer"))}
            for q in bioasq_questions(golden, where, "golden file") if q.get("type") == "factoid"}
    if not gold:
        raise ConfigError(f"{where}: no factoid questions in the golden file")
    if missing := [qid for qid, texts in gold.items() if not texts]:
        raise ConfigError(f"{where}: factoid question {missing[0]!r} has no `exact_answer` text")
    ranked = {q["id"]: _submitted(q.get("exact_answer"))
              for q in bioasq_questions(submitted, "submission", "submission")}
    strict = lenient = reciprocal = 0.0
    for qid, texts in gold.items():
        answers = ranked.get(qid, [])
        rank = next((i + 1 for i, answer in enumerate(answers) if answer in texts), None)
        if rank is not None:
            strict += rank == 1
            lenient += 1
            reciprocal += 1 / rank
    n = len(gold)
    return {"strict_acc": 100 * strict / n, "lenient_acc": 100 * lenient / n, "mrr": 100 * reciprocal / n,
            "questions": n}


def read_submission(path: str) -> dict[str, Any]:
    """A BioASQ submission file, checked to be BioASQ's JSON (errors name the file and question)."""
    submitted = read_json(path, "BioASQ submission")
    bioasq_questions(submitted, path, "submission")
    return submitted


def load_golden(paths: Sequence[str]) -> dict[str, dict]:
    """path -> golden JSON for each of `paths` (one per test batch), each checked to hold factoid questions
    with answers."""
    goldens: dict[str, dict] = {}
    for path in paths:
        if path in goldens:
            raise ConfigError(f"{path}: golden file given twice")
        goldens[path] = read_json(path, "BioASQ golden")
        factoid_scores(goldens[path], {"questions": []}, path)  # fails here on a malformed golden file
    return goldens


def scores_over_batches(goldens: Mapping[str, Mapping[str, Any]], submitted: Mapping[str, Any]) -> dict[str, Any]:
    """The scores against one golden file; against several (the batches of a test set), the mean of each
    score over the batches, the questions of all of them, and each batch's scores under "batches"."""
    per_batch = {path: factoid_scores(golden, submitted, path) for path, golden in goldens.items()}
    if len(per_batch) == 1:
        return next(iter(per_batch.values()))
    return {**{name: statistics.fmean(scores[name] for scores in per_batch.values()) for name in SCORES},
            "questions": sum(scores["questions"] for scores in per_batch.values()), "batches": per_batch}
