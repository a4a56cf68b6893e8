"""Text to Megatron-compatible indexed datasets: read documents, split sentences (Punkt), WordPiece them
(HF tokenizers, identical to BertTokenizer) in a process pool, and stream them to `.bin` / `.idx`.

Output: `<prefix>_<json_key>_sentence.{bin,idx}` with --split-sentences (one sequence per sentence, as
BERT pretraining reads), else `<prefix>_<json_key>_document.{bin,idx}`, Megatron's naming. Memory stays
flat in corpus size: at most `2 x workers` batches are in flight, and the writer streams to disk.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from megabio.data.indexed_dataset import IndexedDatasetWriter, optimal_dtype
from megabio.io.corpus import read_documents
from megabio.tokenizer.wordpiece import encode_ids, load_wordpiece

BATCH_DOCUMENTS = 128


@dataclass(frozen=True)
class PreprocessSettings:
    vocab_file: str
    """WordPiece vocab.txt."""
    lower_case: bool = False
    split_sentences: bool = False
    """One sequence per sentence (BERT pretraining data) instead of one per document."""
    punkt_file: str | None = None
    """Punkt parameters from `megabio splitter train`; without it, nltk's installed English Punkt model."""
    json_key: str = "text"
    workers: int = 1
    """Processes splitting sentences (Punkt is pure Python). Tokenizing runs on the tokenizer's own threads,
    all cores unless RAYON_NUM_THREADS limits them."""


@functools.lru_cache(maxsize=2)
def _tools(settings: PreprocessSettings):
    """The tokenizer and splitter of this process, built once per worker."""
    tokenizer = load_wordpiece(settings.vocab_file, settings.lower_case)
    splitter = None
    if settings.split_sentences:
        from megabio.tokenizer.sentences import SentenceSplitter  # nltk costs 3 s and 130 MB to import

        splitter = SentenceSplitter.load(settings.punkt_file) if settings.punkt_file else SentenceSplitter.default()
    return tokenizer, splitter


def encode_documents(texts: list[str], settings: PreprocessSettings) -> list[list[list[int]]]:
    """Token ids per sentence (or per document) of each text; empty pieces are dropped."""
    tokenizer, splitter = _tools(settings)
    pieces = [splitter.split(text) if splitter else [text] for text in texts]
    # One call for the whole batch: the tokenizer's own threads share it out.
    ids = iter(encode_ids(tokenizer, [piece for document in pieces for piece in document]))
    return [[sequence for sequence in itertools.islice(ids, len(document)) if sequence] for document in pieces]


def _batches(documents: Iterator, size: int) -> Iterator[tuple[list[str], int]]:
    """(texts, bytes) in batches of `size` documents."""
    while batch := list(itertools.islice(documents, size)):
        texts = [d.text for d in batch]
        yield texts, sum(len(t.encode("utf-8")) for t in texts)


def output_prefix(prefix: str, settings: PreprocessSettings) -> str:
    return f"{prefix}_{settings.json_key}_{'sentence' if settings.split_sentences else 'document'}"


def preprocess(inputs: list[str], prefix: str, settings: PreprocessSettings, exclude_ids: set[str] | None = None,
               show_progress: bool = True) -> dict:
    """Write the indexed dataset; returns counts (documents, sequences, tokens, bytes, seconds)."""
    tokenizer, _ = _tools(settings)  # fail early on a bad vocabulary or Punkt file
    dtype = optimal_dtype(tokenizer.get_vocab_size())
    target = output_prefix(prefix, settings)
    batches = _batches(read_documents(inputs, settings.json_key, exclude_ids), BATCH_DOCUMENTS)
    encode = functools.partial(encode_documents, settings=settings)
    stats = dict(documents=0, sequences=0, tokens=0, bytes=0)
    started = last_report = time.monotonic()

    def write(writer: IndexedDatasetWriter, encoded: list[list[list[int]]], n_bytes: int) -> None:
        nonlocal last_report
        for document in encoded:
            if document:
                writer.add_document(document)
                stats["documents"] += 1
                stats["sequences"] += len(document)
                stats["tokens"] += sum(map(len, document))
        stats["bytes"] += n_bytes
        if show_progress and time.monotonic() - last_report > 2:
            last_report = time.monotonic()
            elapsed = last_report - started
            print(f"  {stats['documents']:,} documents, {stats['bytes'] / 1e6:.1f} MB "
                  f"({stats['bytes'] / 1e6 / elapsed:.2f} MB/s, {stats['sequences'] / elapsed:,.0f} sequences/s)",
                  file=sys.stderr, flush=True)

    with IndexedDatasetWriter(target, dtype) as writer:
        if settings.workers <= 1 or not settings.split_sentences:
            # Tokenizing alone is faster here than in a pool: the tokenizer's threads share each batch out,
            # and no text or id list is pickled between processes.
            for texts, n_bytes in batches:
                write(writer, encode(texts), n_bytes)
        else:
            with multiprocessing.get_context("spawn").Pool(settings.workers) as pool:
                pending: deque = deque()
                for texts, n_bytes in batches:
                    pending.append((pool.apply_async(encode, (texts,)), n_bytes))
                    if len(pending) >= 2 * settings.workers:  # bounded read-ahead keeps memory flat
                        result, size = pending.popleft()
                        write(writer, result.get(), size)
                while pending:
                    result, size = pending.popleft()
                    write(writer, result.get(), size)
    stats["seconds"] = round(time.monotonic() - started, 2)
    stats["output_prefix"] = target
    if show_progress:
        print(f"wrote {target}.bin/.idx: {stats['documents']:,} documents, {stats['sequences']:,} sequences, "
              f"{stats['tokens']:,} tokens in {stats['seconds']} s", file=sys.stderr, flush=True)
    return stats
