"""Train a SentencePiece model on a corpus and convert it into a BERT WordPiece vocab.txt.

The corpus is normalised and split into words exactly as BERT's tokenizer will split it (so pieces never
cross a word boundary), streamed to a temporary file, and given to SentencePiece. Conversion: a piece
that starts a word (SentencePiece's leading "▁") keeps its text, any other piece gets "##"; the special
tokens come first, then every character seen at least `min_char_count` times and a base alphabet of
biomedical text (Greek, super- and subscripts, dashes, primes, symbols) in both forms, so common text
never becomes [UNK]. Everything is written to a temporary directory that is renamed into place at the
end, so a failed or interrupted build leaves nothing behind.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import sentencepiece as spm

from megabio.io.atomic import atomic_directory
from megabio.io.corpus import expand_paths, read_documents
from megabio.tokenizer.wordpiece import CONTINUATION_PREFIX, SPECIAL_TOKENS, bert_normalizer, bert_pre_tokenizer

_WORD_START = "\u2581"  # SentencePiece's word-boundary marker

# Characters of biomedical text that get entries (both forms) even if the training corpus lacks them:
# ASCII, Greek, super- and subscript digits and signs, dashes, primes, and common scientific symbols.
BASE_ALPHABET = "".join(
    [chr(c) for c in range(0x21, 0x7F)]
    + [chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2] + [chr(c) for c in range(0x3B1, 0x3CA)]
    + list("\u00b9\u00b2\u00b3\u2070\u2071\u2074\u2075\u2076\u2077\u2078\u2079\u207a\u207b\u207c\u207d\u207e")
    + [chr(c) for c in range(0x2080, 0x208F)]
    + list("\u2010\u2011\u2012\u2013\u2014\u2212\u2032\u2033\u2034\u00b0\u00b1\u00d7\u00f7\u00b7\u00b5\u2264\u2265"
           "\u2260\u2248\u221e\u2192\u2190\u2194\u2191\u2193\u2030\u00a7\u00ae\u2122\u00a9\u2020\u2021\u2022\u2026"
           "\u00c5\u212b"))


class VocabError(ValueError):
    """A vocabulary build that cannot succeed; the message names the input or flag."""


@dataclass(frozen=True)
class VocabSettings:
    vocab_size: int = 30000
    """Entries of the final vocab.txt, special tokens included."""
    model_type: str = "unigram"
    """SentencePiece algorithm: `unigram` or `bpe`."""
    lower_case: bool = False
    """Lower-case (and strip accents) before training, for an uncased vocabulary."""
    sample_sentences: int = 2_000_000
    """Lines SentencePiece samples from a larger corpus (its input_sentence_size)."""
    min_char_count: int = 2
    """Characters seen at least this often are guaranteed an entry in both forms."""
    json_key: str = "text"
    """Field holding the text in JSON-lines input."""
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise VocabError(f"model_type {self.model_type!r}: choose unigram or bpe")
        if self.vocab_size < len(SPECIAL_TOKENS) + 10:
            raise VocabError(f"vocab_size {self.vocab_size} is too small to be useful")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sha256_of_files(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _write_training_text(inputs: list[Path], settings: VocabSettings, exclude_ids: set[str] | None,
                         target: Path, show_progress: bool) -> tuple[collections.Counter, int, int]:
    """Normalised, word-split lines in `target`; returns (character counts, documents, bytes of text)."""
    normalizer, pre_tokenizer = bert_normalizer(settings.lower_case), bert_pre_tokenizer()
    chars: collections.Counter = collections.Counter()
    documents = text_bytes = 0
    started = last = time.monotonic()
    with open(target, "w", encoding="utf-8") as out:
        for document in read_documents(inputs, settings.json_key, exclude_ids):
            words = [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(document.text))]
            if not words:
                continue
            line = " ".join(words)
            chars.update(line.replace(" ", ""))
            out.write(line + "\n")
            documents += 1
            text_bytes += len(document.text.encode("utf-8"))
            if show_progress and time.monotonic() - last > 2:
                last = time.monotonic()
                _progress(f"  read {documents:,} documents, {text_bytes / 1e6:.1f} MB "
                          f"({text_bytes / 1e6 / (last - started):.1f} MB/s)")
    return chars, documents, text_bytes


def _train_sentencepiece(text_file: Path, model_prefix: Path, settings: VocabSettings) -> spm.SentencePieceProcessor:
    spm.set_random_generator_seed(settings.seed)  # sampling and shuffling become reproducible
    try:
        spm.SentencePieceTrainer.train(
            input=str(text_file), model_prefix=str(model_prefix), vocab_size=settings.vocab_size,
            model_type=settings.model_type, character_coverage=0.9999, input_sentence_size=settings.sample_sentences,
            shuffle_input_sentence=True, seed_sentencepiece_size=5_000_000, max_sentence_length=1 << 16,
            num_threads=os.cpu_count() or 1, split_digits=False, normalization_rule_name="identity",
            add_dummy_prefix=True, minloglevel=2)
    except RuntimeError as error:
        if "Vocabulary size" in str(error) or "vocab_size" in str(error):
            raise VocabError(f"vocab_size {settings.vocab_size}: the corpus cannot support that many pieces "
                             f"({error}); give more text or ask for a smaller vocabulary") from None
        raise
    return spm.SentencePieceProcessor(model_file=f"{model_prefix}.model")


def sentencepiece_to_wordpiece(processor: spm.SentencePieceProcessor, chars: collections.Counter,
                               settings: VocabSettings) -> list[str]:
    """The WordPiece vocabulary: specials, guaranteed characters (both forms), then pieces by score."""
    vocab: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    frequent = [char for char, count in chars.most_common() if count >= settings.min_char_count]
    base = bert_normalizer(settings.lower_case).normalize_str(BASE_ALPHABET)
    for char in [*frequent, *base]:
        vocab.setdefault(char)
        vocab.setdefault(CONTINUATION_PREFIX + char)
    pieces = sorted(
        (i for i in range(processor.get_piece_size())
         if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i))),
        key=lambda i: -processor.get_score(i) if settings.model_type == "unigram" else i)
    for i in pieces:
        piece = processor.id_to_piece(i)
        if piece == _WORD_START:
            continue
        token = piece[1:] if piece.startswith(_WORD_START) else CONTINUATION_PREFIX + piece
        vocab.setdefault(token)
        if len(vocab) >= settings.vocab_size:
            break
    if len(vocab) < settings.vocab_size:
        raise VocabError(f"vocab_size {settings.vocab_size}: the corpus gave only {len(vocab)} distinct entries; "
                         f"give more text or ask for a smaller vocabulary")
    return list(vocab)[: settings.vocab_size]


def build_vocab(inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike, settings: VocabSettings,
                exclude_ids: set[str] | None = None, overwrite: bool = False, show_progress: bool = True) -> dict:
    """Build `output_dir` with vocab.txt, spm.model, spm.vocab and vocab_card.json; returns the card."""
    output = Path(output_dir)
    if output.exists() and not overwrite:
        raise VocabError(f"{output} exists: choose another directory or overwrite it")
    files = expand_paths(inputs)
    if not files:
        raise VocabError("no input files")
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.text-") as scratch, \
            atomic_directory(output, replace=overwrite) as work:
        text_file = Path(scratch) / "training_text.txt"
        if show_progress:
            _progress(f"reading {len(files)} file(s)")
        chars, documents, text_bytes = _write_training_text(files, settings, exclude_ids, text_file, show_progress)
        if documents == 0:
            raise VocabError(f"the corpus is empty: no text in {', '.join(map(str, files[:5]))}")
        if show_progress:
            _progress(f"training SentencePiece {settings.model_type} ({settings.vocab_size:,}) on "
                      f"{documents:,} documents, {text_bytes / 1e6:.1f} MB")
        processor = _train_sentencepiece(text_file, work / "spm", settings)
        vocab = sentencepiece_to_wordpiece(processor, chars, settings)
        (work / "vocab.txt").write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
        card = {
            "vocab_size": len(vocab),
            "settings": asdict(settings),
            "corpus": {"files": [str(f) for f in files], "sha256": _sha256_of_files(files),
                       "documents": documents, "text_bytes": text_bytes,
                       "excluded_ids": len(exclude_ids or ())},
            "sentencepiece_version": spm.__version__,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "vocab_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    if show_progress:
        _progress(f"wrote {output}/vocab.txt ({len(vocab):,} entries) in {card['build_seconds']} s")
    return card
