"""BioASQ question files (the JSON BioASQ releases: training sets, test batches, golden files) as SQuAD v1.1
span-extraction data, the form BioBERT's BioASQ files take.

Each factoid question is asked once per snippet: the snippet's text is the context and the question id is
`<question id>_<nnn>`, `nnn` the snippet's 1-based place in the question's list, so the n-best answers of
a question's snippets can be pooled again (`megabio.finetune.bioasq`). Without answers (a test batch)
every snippet is kept. With answers (a training set) a snippet's answer is the earliest case-insensitive
occurrence of any of the question's `exact_answer` synonyms (the longest one where several start there),
taken with the snippet's own casing; a snippet that holds none is left out, as BioBERT's training files
leave such snippets out (their numbering keeps the gaps).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from megabio.config import ConfigError
from megabio.io.atomic import atomic_write_text
from megabio.io.text import read_json


def bioasq_questions(document: Any, where: str, what: str) -> list[dict[str, Any]]:
    """The `questions` of a BioASQ JSON document, each checked to be an object with a string `id`."""
    questions = document.get("questions") if isinstance(document, Mapping) else None
    if not isinstance(questions, list):
        raise ConfigError(f'{where}: not a BioASQ {what} (JSON {{"questions": [{{"id", ...}}, ...]}})')
    for index, question in enumerate(questions):
        if not isinstance(question, Mapping) or not isinstance(question.get("id"), str):
            raise ConfigError(f"{where}: questions[{index}] is not an object with a string `id`")
    return questions


def synonyms(exact_answer: Any) -> list[str]:
    """Every string of a factoid `exact_answer` (nested lists flattened), in order."""
    if isinstance(exact_answer, str):
        return [exact_answer]
    if not isinstance(exact_answer, list):
        return []
    return [text for item in exact_answer for text in synonyms(item)]


def find_answer(context: str, answers: Sequence[str]) -> tuple[str, int] | None:
    """(text as the context writes it, character start) of the earliest case-insensitive occurrence of any
    of `answers` (the longest where several start at one place), or None."""
    lowered = context.lower()
    found = []
    for answer in answers:
        if answer.strip() and (start := lowered.find(answer.lower())) >= 0:
            found.append((start, -len(answer)))
    if not found:
        return None
    start, negative_length = min(found)
    return context[start: start - negative_length], start


def factoid_paragraphs(document: Any, where: str, with_answers: bool, owners: dict[str, str]
                       ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(SQuAD paragraphs, counts) of the factoid questions of a BioASQ document: one paragraph per snippet.
    `owners` (question id -> file) holds the questions read so far; a question read twice is an error, as
    its snippets would be pooled together."""
    paragraphs, counts = [], {"questions": 0, "snippets": 0, "snippets_without_answer": 0,
                              "questions_without_answer": 0}
    for question in bioasq_questions(document, where, "question file"):
        if question.get("type") != "factoid":
            continue
        qid, body, snippets = question["id"], question.get("body"), question.get("snippets")
        if qid in owners:
            raise ConfigError(f"{where}: question {qid!r} is also in {owners[qid]}: its snippets would be pooled "
                              f"together")
        owners[qid] = where
        if not isinstance(body, str) or not body.strip():
            raise ConfigError(f"{where}: question {qid!r} has no `body` text")
        if not isinstance(snippets, list):
            raise ConfigError(f"{where}: question {qid!r} has no `snippets` list")
        answers = synonyms(question.get("exact_answer"))
        if with_answers and not answers:
            raise ConfigError(f"{where}: factoid question {qid!r} has no `exact_answer` text (a training file "
                              f"needs answers; leave out --with-answers for a test batch)")
        counts["questions"] += 1
        kept = 0
        for number, snippet in enumerate(snippets, start=1):
            text = snippet.get("text") if isinstance(snippet, Mapping) else None
            if not isinstance(text, str):
                raise ConfigError(f"{where}: question {qid!r}, snippet {number} has no `text`")
            qa: dict[str, Any] = {"id": f"{qid}_{number:03d}", "question": body, "answers": []}
            if with_answers:
                if (answer := find_answer(text, answers)) is None:
                    counts["snippets_without_answer"] += 1
                    continue
                qa["answers"] = [{"text": answer[0], "answer_start": answer[1]}]
            paragraphs.append({"context": text, "qas": [qa]})
            kept += 1
        counts["snippets"] += kept
        counts["questions_without_answer"] += with_answers and not kept
    if not counts["questions"]:
        raise ConfigError(f"{where}: no factoid questions")
    return paragraphs, counts


def build_bioasq(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, with_answers: bool = False,
                 overwrite: bool = False) -> dict[str, int]:
    """Write the factoid questions of BioASQ JSON files (several: their questions in order) as one SQuAD
    v1.1 file; returns the counts of questions and snippets written and left out."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} exists: choose another --output or pass --overwrite")
    paragraphs: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    owners: dict[str, str] = {}
    for path in inputs:
        found, counts = factoid_paragraphs(read_json(path, "BioASQ"), str(path), with_answers, owners)
        paragraphs += found
        totals = {name: totals.get(name, 0) + value for name, value in counts.items()}
    if not with_answers:  # every snippet kept: nothing was left out
        totals = {name: totals[name] for name in ("questions", "snippets")}
    squad = {"version": "BioASQ", "data": [{"title": "BioASQ", "paragraphs": paragraphs}]}
    atomic_write_text(output, json.dumps(squad, indent=1, ensure_ascii=False))
    return totals
