"""Which sentences form each BERT sample: the compiled helper (csrc/data/helpers.cpp), its pure-Python
reference (the same algorithm and SplitMix64 generator, so both give the same array), and an on-disk
cache keyed by a hash of every setting."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from megabio.io.atomic import atomic_file

_MASK64 = (1 << 64) - 1
LONG_SENTENCE_LENGTH = 512


class _SplitMix64:
    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def __call__(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)


def build_mapping_reference(document_index: np.ndarray, sizes: np.ndarray, num_epochs: int, max_num_samples: int,
                            max_seq_length: int, short_seq_ratio: int, seed: int, min_num_sentences: int,
                            long_sentence_length: int = LONG_SENTENCE_LENGTH) -> np.ndarray:
    """Pure-Python twin of the C++ helper (slow; the tests' oracle)."""
    rng = _SplitMix64(seed)

    def target() -> int:
        r = rng()
        if short_seq_ratio > 0 and r % short_seq_ratio == 0:
            return 2 + r % (max_seq_length - 1)
        return max_seq_length

    samples: list[tuple[int, int, int]] = []
    for _ in range(num_epochs):
        for doc in range(len(document_index) - 1):
            if max_num_samples > 0 and len(samples) >= max_num_samples:
                break
            first, last = int(document_index[doc]), int(document_index[doc + 1])
            if last - first < min_num_sentences or any(sizes[first:last] > long_sentence_length):
                continue
            start, length, count, remaining, goal = first, 0, 0, last - first, target()
            for s in range(first, last):
                length += int(sizes[s])
                count += 1
                remaining -= 1
                if (length >= goal and remaining > 1 and count >= min_num_sentences) or remaining == 0:
                    if count >= min_num_sentences:
                        samples.append((start, s + 1, goal))
                    start, length, count, goal = s + 1, 0, 0, target()
    shuffle = _SplitMix64(seed + 1)
    for i in range(len(samples) - 1, 0, -1):
        j = shuffle() % (i + 1)
        samples[i], samples[j] = samples[j], samples[i]
    return np.asarray(samples, dtype=np.int64).reshape(-1, 3)


def build_mapping(document_index: np.ndarray, sizes: np.ndarray, num_epochs: int, max_num_samples: int,
                  max_seq_length: int, short_seq_prob: float, seed: int, min_num_sentences: int) -> np.ndarray:
    """The sample map, by the compiled helper when built, else by the reference."""
    short_seq_ratio = round(1.0 / short_seq_prob) if short_seq_prob > 0 else 0
    args = (document_index, sizes, num_epochs, max_num_samples, max_seq_length, short_seq_ratio, seed,
            min_num_sentences, LONG_SENTENCE_LENGTH)
    try:
        from megabio.data import _helpers
    except ImportError:
        return build_mapping_reference(*args)
    return _helpers.build_mapping(*args)


def cached_mapping(prefix: str | os.PathLike, settings: dict, build) -> np.ndarray:
    """`build()` once per distinct `settings`, saved as `<prefix>_bert_map_<hash>.npy` (temp file + rename)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(f"{prefix}_bert_map_{key}.npy")
    if path.is_file():
        return np.load(path, allow_pickle=False)
    mapping = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, mapping, allow_pickle=False)
    return mapping
