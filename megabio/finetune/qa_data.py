"""Question-answering data: SQuAD v1.1 JSON, and its features for span extraction.

A context longer than the sequence allows is cut into windows `--doc-stride` tokens apart; each window is
`[CLS] question [SEP] context window [SEP]` (question cut to `--max-query-length` tokens). A training
window whose context holds the whole answer points at it, others at [CLS]. At prediction a token's answer
is read only from the window where the token has the most context (as BERT's SQuAD code does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from megabio.config import ConfigError
from megabio.io.text import read_json


@dataclass
class Question:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    """(text, character start in the context); empty when unknown."""


def read_squad(path: str | Path, require_answers: bool = True) -> list[Question]:
    """The questions of a SQuAD v1.1 file; a missing field, or an answer whose `answer_start` does not point
    at its text in the context, is an error naming the file and the item."""
    path = Path(path)
    document = read_json(path, "SQuAD")
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: not a SQuAD file (no `data` list of articles)")
    questions = []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(_field(path, f"data[{a}]", article, "paragraphs", list, [])):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(path, where, paragraph, "context", str)
            for q, qa in enumerate(_field(path, where, paragraph, "qas", list, [])):
                qid = _field(path, f"{where}.qas[{q}]", qa, "id", str)
                where_qa = f"question {qid!r}"
                answers = []
                for answer in _field(path, where_qa, qa, "answers", list, []):
                    text = _field(path, f"{where_qa}, an answer", answer, "text", str)
                    start = _field(path, f"{where_qa}, answer {text!r}", answer, "answer_start", int | str)
                    if isinstance(start, str):  # some converted files write it as a string
                        if not start.isdigit():
                            raise ConfigError(f"{path}: {where_qa}, answer {text!r}: answer_start {start!r} is "
                                              f"not a character offset")
                        start = int(start)
                    if context[start: start + len(text)] != text:
                        raise ConfigError(f"{path}: {where_qa}: answer_start {start} does not point at its "
                                          f"answer {text!r} in the context")
                    answers.append((text, start))
                if require_answers and not answers:
                    unanswerable = " (an unanswerable SQuAD v2.0 question: only v1.1 span extraction is trained)" \
                        if qa.get("is_impossible") else ""
                    raise ConfigError(f"{path}: {where_qa} has no answer{unanswerable}")
                questions.append(Question(qid, _field(path, where_qa, qa, "question", str), context, answers))
    if not questions:
        raise ConfigError(f"{path}: no questions")
    return questions


_MISSING = object()


def _field(path: Path, where: str, item, name: str, kind, default=_MISSING):
    """`item[name]`, checked to be of `kind` (`default` when absent, if given); else an error naming the item."""
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: {where} is not a JSON object")
    value = item.get(name, default)
    if value is _MISSING:
        raise ConfigError(f"{path}: {where} has no `{name}`")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{path}: {where}: `{name}` is {json.dumps(value)[:40]}, not a JSON {_JSON_TYPES[kind]}")
    return value


_JSON_TYPES = {str: "string", list: "list", int | str: "number"}


@dataclass
class Feature:
    question: int
    """Index of its question."""
    input_ids: list[int]
    token_type_ids: list[int]
    context_offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Token position -> (start, end) characters in the context, for the context tokens of this window."""
    max_context: set[int] = field(default_factory=set)
    """Token positions whose answers are read from this window."""
    start: int = 0
    end: int = 0
    """Answer token positions (0: [CLS], no answer in this window)."""


def _windows(length: int, budget: int, stride: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        spans.append((start, min(length, start + budget)))
        if start + budget >= length:
            return spans
        start += stride


def _home_window(token: int, spans: list[tuple[int, int]]) -> int:
    """The window where `token` sits most centrally (ties: the earlier window)."""
    return max(range(len(spans)), key=lambda s: (min(token - spans[s][0], spans[s][1] - 1 - token)
                                                 if spans[s][0] <= token < spans[s][1] else -1, -s))


def make_features(questions: list[Question], tokenizer, seq_length: int, doc_stride: int,
                  max_query_length: int) -> list[Feature]:
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    asked = tokenizer.encode_batch([q.question for q in questions], add_special_tokens=False)
    contexts = tokenizer.encode_batch([q.context for q in questions], add_special_tokens=False)
    features = []
    for index, (question, query, context) in enumerate(zip(questions, asked, contexts, strict=True)):
        query_ids = query.ids[:max_query_length]
        budget = seq_length - len(query_ids) - 3
        if budget < 1:
            raise ConfigError(f"seq_length {seq_length} leaves no room for the context after a question of "
                              f"{len(query_ids)} tokens: raise it or lower max_query_length")
        spans = _windows(len(context.ids), budget, min(doc_stride, budget))
        answer = None
        if question.answers:
            text, start = question.answers[0]
            tokens = [i for i, (a, b) in enumerate(context.offsets) if a < start + len(text) and b > start]
            answer = (tokens[0], tokens[-1]) if tokens else None
        for number, (first, last) in enumerate(spans):
            offset = len(query_ids) + 2  # [CLS] question [SEP]
            feature = Feature(index, [cls, *query_ids, sep, *context.ids[first:last], sep],
                              [0] * offset + [1] * (last - first + 1))
            for token in range(first, last):
                feature.context_offsets[offset + token - first] = context.offsets[token]
                if _home_window(token, spans) == number:
                    feature.max_context.add(offset + token - first)
            if answer is not None and first <= answer[0] and answer[1] < last:
                feature.start, feature.end = offset + answer[0] - first, offset + answer[1] - first
            features.append(feature)
    return features
