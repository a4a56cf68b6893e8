"""How well a vocabulary keeps words whole: sub-tokens per word over all words and over named-entity
words of IOB files (the BioMegatron paper's Table 3 measure), the [UNK] rate, the most fragmented
entity words."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path

from megabio.io.corpus import CorpusError
from megabio.io.text import numbered_lines
from megabio.tokenizer.wordpiece import load_wordpiece


def read_iob(path: str | os.PathLike) -> Iterator[list[tuple[str, str]]]:
    """Sentences of (word, tag) from `word<TAB>tag` lines, blank lines between sentences."""
    sentence: list[tuple[str, str]] = []
    for line_no, line in numbered_lines(path, CorpusError):
        if not line.strip():
            if sentence:
                yield sentence
            sentence = []
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0]:
            raise CorpusError(f"{path}:{line_no}: expected 'word<TAB>tag', got {line[:60]!r}")
        sentence.append((fields[0], fields[-1]))
    if sentence:
        yield sentence


def _summary(word_counts: collections.Counter, entity_counts: collections.Counter,
             pieces: dict[str, list[str]], top: int) -> dict:
    def mean_pieces(counts: collections.Counter) -> float:
        total = sum(counts.values())
        return sum(len(pieces[w]) * c for w, c in counts.items()) / total if total else 0.0

    total_pieces = sum(len(pieces[w]) * c for w, c in word_counts.items())
    unknown = sum(pieces[w].count("[UNK]") * c for w, c in word_counts.items())
    fragmented = sorted(entity_counts, key=lambda w: (-len(pieces[w]), -entity_counts[w], w))[:top]
    return {
        "words": sum(word_counts.values()),
        "entity_words": sum(entity_counts.values()),
        "subtokens_per_word": mean_pieces(word_counts),
        "subtokens_per_entity_word": mean_pieces(entity_counts),
        "unk_rate": unknown / total_pieces if total_pieces else 0.0,
        "most_fragmented_entity_words": [
            {"word": w, "subtokens": pieces[w], "count": entity_counts[w]} for w in fragmented],
    }


def vocab_stats(vocab_file: str | os.PathLike, iob_files: list[str | os.PathLike], lower_case: bool = False,
                top: int = 20) -> dict:
    """Per-file and overall statistics; an entity word is one whose tag is not O."""
    tokenizer = load_wordpiece(vocab_file, lower_case)
    per_file, all_words, all_entities = {}, collections.Counter(), collections.Counter()
    pieces: dict[str, list[str]] = {}
    for path in iob_files:
        if not Path(path).is_file():
            raise CorpusError(f"{path}: IOB file not found")
        words, entities = collections.Counter(), collections.Counter()
        for sentence in read_iob(path):
            for word, tag in sentence:
                words[word] += 1
                if tag != "O":
                    entities[word] += 1
        new = [w for w in words if w not in pieces]
        for word, encoding in zip(new, tokenizer.encode_batch(new, add_special_tokens=False), strict=True):
            pieces[word] = encoding.tokens
        per_file[str(path)] = _summary(words, entities, pieces, top)
        all_words.update(words)
        all_entities.update(entities)
    return {"vocab": str(vocab_file), "vocab_size": tokenizer.get_vocab_size(), "lower_case": lower_case,
            "files": per_file, "overall": _summary(all_words, all_entities, pieces, top)}
