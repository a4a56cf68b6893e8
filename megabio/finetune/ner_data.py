"""NER data: IOB / CoNLL files, raw text, and their encoding into windows of WordPiece ids.

Labelling (the BioMegatron paper's Figure 1): `subtoken` gives a word's tag to its first sub-token and
leaves continuation pieces out of the loss; `wholeword` gives every piece the word's tag. Predictions are
always read at each word's first sub-token. A sentence longer than the sequence length is cut into
overlapping windows; each word is predicted (and trained) in exactly one of them, the one where it has
the most context on its shorter side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megabio.config import IGNORE_INDEX, ConfigError
from megabio.io.text import numbered_lines

Labeling = Literal["subtoken", "wholeword"]
_IOB_TAG = re.compile(r"^(O|[BIES](-.+)?)$")


class DataError(ConfigError):
    """Bad task data; the message names the file and line."""


@dataclass
class Sentence:
    words: list[str]
    tags: list[str] | None
    """None for unlabelled text."""
    line: int = 0
    """Line of the first word in its file (1-based), for messages."""


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def read_conll(path: str | Path, require_tags: bool = True) -> list[Sentence]:
    """Sentences of a CoNLL / IOB file: `token<TAB>tag` per line (whitespace-separated without a tab), a blank
    line between sentences, `-DOCSTART-` lines skipped. With `require_tags=False` a token-only column is
    accepted; a further column makes the last one the tag."""
    path = _check_file(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0

    def close() -> None:
        if words:
            sentences.append(Sentence(list(words), list(tags) if tags else None, first_line))
        words.clear()
        tags.clear()

    for number, line in numbered_lines(path, DataError):
        if not line.strip():
            close()
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if fields[0].startswith("-DOCSTART-"):
            close()
            continue
        if not words:
            first_line = number
        if len(fields) == 1 and not require_tags and not tags:
            words.append(fields[0])
            continue
        if len(fields) != 2 and (require_tags or len(fields) < 2):
            raise DataError(f"{path}:{number}: expected `token<TAB>tag`, got {len(fields)} column(s): {line!r}")
        tag = fields[-1].strip()
        if not tag:
            raise DataError(f"{path}:{number}: empty tag")
        if not _IOB_TAG.match(tag):
            raise DataError(f"{path}:{number}: {tag!r} is not an IOB tag (O, B-TYPE, I-TYPE, or bare B / I)")
        if len(tags) != len(words):
            raise DataError(f"{path}:{number}: a tag column appears in the middle of a sentence")
        words.append(fields[0])
        tags.append(tag)
    close()
    if not sentences:
        raise DataError(f"{path}: no sentences")
    return sentences


def read_text(path: str | Path, pre_tokenize) -> list[Sentence]:
    """One sentence per line, split into words by `pre_tokenize(text) -> [(word, offsets), ...]`."""
    path = _check_file(path)
    sentences = []
    for number, line in numbered_lines(path, DataError):
        words = [word for word, _ in pre_tokenize(line.strip())]
        if words:
            sentences.append(Sentence(words, None, number))
    if not sentences:
        raise DataError(f"{path}: no sentences")
    return sentences


def label_map(train: Sequence[Sentence]) -> list[str]:
    """The training set's tags, `O` first, the rest sorted: the model's output classes."""
    tags = {tag for sentence in train for tag in sentence.tags or ()}
    return sorted(tags, key=lambda tag: (tag != "O", tag))


def check_known_tags(sentences: Iterable[Sentence], labels: Sequence[str], path: str | Path) -> None:
    known = set(labels)
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags or ()):
            if tag not in known:
                raise DataError(f"{path}:{sentence.line + offset}: tag {tag!r} does not occur in the training "
                                f"data (known: {', '.join(labels)})")


@dataclass
class Window:
    """One model input: `[CLS] pieces [SEP]` of words `start..end-1` of sentence `sentence`."""

    sentence: int
    input_ids: list[int]
    labels: list[int]
    """Per token: a class id, or IGNORE_INDEX where no loss is taken."""
    first_pieces: list[int] = field(default_factory=list)
    """Token positions of the first piece of each word predicted from this window."""
    words: list[int] = field(default_factory=list)
    """Sentence word indices of those words (same order)."""


def _pieces(tokenizer, sentences: Sequence[Sentence]) -> list[list[list[int]]]:
    """Per sentence, per word, its WordPiece ids (at least one: an empty word becomes [UNK])."""
    unk = tokenizer.token_to_id("[UNK]")
    encodings = tokenizer.encode_batch([s.words for s in sentences], is_pretokenized=True, add_special_tokens=False)
    result = []
    for sentence, encoding in zip(sentences, encodings, strict=True):
        per_word: list[list[int]] = [[] for _ in sentence.words]
        for token_id, word in zip(encoding.ids, encoding.word_ids, strict=True):
            per_word[word].append(token_id)
        result.append([ids or [unk] for ids in per_word])
    return result


def window_spans(lengths: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges `[start, end)` covering all words, each at most `budget` pieces (a longer single word is
    cut), consecutive windows overlapping by about half a window."""
    lengths = [min(n, budget) for n in lengths]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    spans, start = [], 0
    while True:
        end = start
        while end < len(lengths) and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        spans.append((start, end))
        if end == len(lengths):
            return spans
        half = (offsets[end] - offsets[start]) // 2
        start = next(i for i in range(start + 1, end + 1) if offsets[i] - offsets[start] >= half or i == end)


def home_windows(lengths: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each word, the window where its shorter side of context (in pieces) is longest."""
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    home = []
    for word in range(len(lengths)):
        candidates = [(min(offsets[word] - offsets[s], offsets[e] - offsets[word + 1]), -i)
                      for i, (s, e) in enumerate(spans) if s <= word < e]
        home.append(-max(candidates)[1])
    return home


def encode(sentences: Sequence[Sentence], tokenizer, labels: Sequence[str], seq_length: int,
           labeling: Labeling = "subtoken") -> list[Window]:
    """Windows of every sentence; sentences without tags get no labels (for prediction)."""
    if labeling not in ("subtoken", "wholeword"):
        raise ConfigError(f"labeling={labeling!r}: choose subtoken or wholeword")
    if seq_length < 3:
        raise ConfigError(f"seq_length={seq_length} leaves no room between [CLS] and [SEP]")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    label_id = {tag: i for i, tag in enumerate(labels)}
    budget = seq_length - 2
    windows = []
    for index, (sentence, pieces) in enumerate(zip(sentences, _pieces(tokenizer, sentences), strict=True)):
        pieces = [ids[:budget] for ids in pieces]
        spans = window_spans([len(ids) for ids in pieces], budget)
        home = home_windows([len(ids) for ids in pieces], spans)
        for number, (start, end) in enumerate(spans):
            window = Window(index, [cls], [IGNORE_INDEX])
            for word in range(start, end):
                predicted_here = home[word] == number
                if predicted_here:
                    window.first_pieces.append(len(window.input_ids))
                    window.words.append(word)
                tag = label_id[sentence.tags[word]] if sentence.tags is not None and predicted_here else IGNORE_INDEX
                rest = tag if labeling == "wholeword" else IGNORE_INDEX
                window.input_ids += pieces[word]
                window.labels += [tag] + [rest] * (len(pieces[word]) - 1)
            window.input_ids.append(sep)
            window.labels.append(IGNORE_INDEX)
            windows.append(window)
    return windows
