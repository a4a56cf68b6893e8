"""BERT pretraining samples from a sentence-level indexed dataset.

Each sample packs consecutive sentences of one document up to a target length (sometimes shorter, with
`short_seq_prob`), splits them into segments A and B for the binary head (SOP: B and A swapped half of the
time, Megatron's choice; NSP: B replaced by text from another document half of the time, BERT's), and
masks 15% of the tokens (80% [MASK], 10% random, 10% unchanged), a word's `##` pieces together with
whole-word masking, optionally as n-gram spans. Every sample is a function of (seed, index) alone, so it
does not depend on the number of loader workers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from megabio.config import IGNORE_INDEX
from megabio.data.indexed_dataset import IndexedDataset
from megabio.data.sample_mapping import build_mapping, cached_mapping


@dataclass(frozen=True)
class BertSampleSettings:
    max_seq_length: int = 512
    binary_head: str = "sop"
    """`sop`, `nsp` or `none` (then a sample is one segment)."""
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    whole_word_masking: bool = True
    max_ngram: int = 1
    """Mask spans of up to this many words (probability proportional to 1/n); 1 masks single words."""
    num_epochs: int = 1
    max_num_samples: int = 0
    """Stop building after this many samples (0: all of `num_epochs`)."""
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.binary_head not in ("sop", "nsp", "none"):
            raise ValueError(f"binary_head={self.binary_head!r} must be sop, nsp or none")
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length={self.max_seq_length} is too short for a BERT sample")


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    mask: int
    pad: int

    @classmethod
    def from_vocab(cls, vocab: list[str]) -> SpecialIds:
        index = {token: i for i, token in enumerate(vocab)}
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t not in index]
        if missing:
            raise ValueError(f"the vocabulary lacks {missing}")
        return cls(index["[CLS]"], index["[SEP]"], index["[MASK]"], index["[PAD]"])


class BertDataset(torch.utils.data.Dataset):
    """`dataset[i]` -> dict of tensors: input_ids, token_type_ids, attention_mask, mlm_labels (-100 where
    not masked), binary_labels (1 = swapped / random next)."""

    def __init__(self, prefix: str | os.PathLike, vocab: list[str], settings: BertSampleSettings) -> None:
        self.settings = settings
        self.data = IndexedDataset(prefix)
        self.special = SpecialIds.from_vocab(vocab)
        self.vocab_size = len(vocab)
        self.is_continuation = np.array([t.startswith("##") for t in vocab])
        self.is_special = np.array([t.startswith("[") and t.endswith("]") for t in vocab])
        pairs = settings.binary_head != "none"
        mapping_settings = {**asdict(settings), "dataset": str(prefix), "sequences": len(self.data),
                            "documents": self.data.num_documents}
        self.mapping = cached_mapping(prefix, mapping_settings, lambda: build_mapping(
            self.data.document_index, self.data.sizes, settings.num_epochs, settings.max_num_samples,
            settings.max_seq_length - 3, settings.short_seq_prob, settings.seed, 2 if pairs else 1))
        if len(self.mapping) == 0:
            raise ValueError(f"{prefix}: no document yields a sample (need {2 if pairs else 1}+ sentences each)")

    def __len__(self) -> int:
        return len(self.mapping)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.RandomState((self.settings.seed + index) % 2**32)
        start, end, target = (int(v) for v in self.mapping[index])
        sentences = [self.data[i].astype(np.int64) for i in range(start, end)]
        tokens_a, tokens_b, label = self._segments(sentences, rng)
        self._truncate(tokens_a, tokens_b, target, rng)
        s = self.special
        tokens = np.concatenate([[s.cls], *tokens_a, [s.sep], *((*tokens_b, [s.sep]) if tokens_b else ())])
        types = np.zeros(len(tokens), dtype=np.int64)
        if tokens_b:
            types[len(np.concatenate(tokens_a)) + 2:] = 1
        inputs, labels = self._mask(tokens, rng)
        return self._pad(inputs, types, labels, label)

    def _segments(self, sentences: list[np.ndarray], rng: np.random.RandomState):
        if self.settings.binary_head == "none":
            return sentences, [], -100
        split = rng.randint(1, len(sentences))
        a, b = sentences[:split], sentences[split:]
        is_random = rng.random_sample() < 0.5
        if is_random and self.settings.binary_head == "sop":
            a, b = b, a
        elif is_random:  # NSP: B from another document
            b = self._random_other_document(rng)
        return list(a), list(b), int(is_random)

    def _random_other_document(self, rng: np.random.RandomState) -> list[np.ndarray]:
        docs = self.data.document_index
        doc = rng.randint(0, len(docs) - 1)
        first, last = int(docs[doc]), int(docs[doc + 1])
        begin = rng.randint(first, max(first + 1, last))
        return [self.data[i].astype(np.int64) for i in range(begin, last)] or [self.data[first].astype(np.int64)]

    @staticmethod
    def _truncate(a: list[np.ndarray], b: list[np.ndarray], target: int, rng: np.random.RandomState) -> None:
        """Trim the longer segment, from a random end, until both fit in `target` tokens (BERT's rule; the
        sample map's targets already leave room for [CLS] and two [SEP])."""
        limit = max(target, 2)
        flat_a, flat_b = np.concatenate(a), (np.concatenate(b) if b else np.zeros(0, np.int64))
        while len(flat_a) + len(flat_b) > limit:
            if len(flat_a) >= len(flat_b):
                flat_a = flat_a[1:] if rng.random_sample() < 0.5 else flat_a[:-1]
            else:
                flat_b = flat_b[1:] if rng.random_sample() < 0.5 else flat_b[:-1]
        a[:] = [flat_a]
        b[:] = [flat_b] if b else []

    def _mask(self, tokens: np.ndarray, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        settings = self.settings
        words: list[list[int]] = []  # candidate positions grouped by word
        for position, token in enumerate(tokens):
            if self.is_special[token]:
                continue
            if settings.whole_word_masking and words and self.is_continuation[token] and words[-1][-1] == position - 1:
                words[-1].append(position)
            else:
                words.append([position])
        budget = max(1, round(sum(map(len, words)) * settings.masked_lm_prob))
        ngram_weights = 1.0 / np.arange(1, settings.max_ngram + 1)
        ngram_weights /= ngram_weights.sum()
        order = rng.permutation(len(words))
        chosen: set[int] = set()
        for w in order:
            if len(chosen) >= budget:
                break
            n = rng.choice(settings.max_ngram, p=ngram_weights) + 1 if settings.max_ngram > 1 else 1
            span = [p for word in words[w:w + n] for p in word]
            if len(chosen) + len(span) > budget or chosen.intersection(span):
                continue
            chosen.update(span)
        inputs, labels = tokens.copy(), np.full(len(tokens), IGNORE_INDEX, dtype=np.int64)
        for position in sorted(chosen):
            labels[position] = tokens[position]
            draw = rng.random_sample()
            if draw < 0.8:
                inputs[position] = self.special.mask
            elif draw < 0.9:
                inputs[position] = self._random_token(rng)
        return inputs, labels

    def _random_token(self, rng: np.random.RandomState) -> int:
        while True:
            token = rng.randint(0, self.vocab_size)
            if not self.is_special[token]:
                return token

    def _pad(self, inputs: np.ndarray, types: np.ndarray, labels: np.ndarray, binary: int) -> dict[str, torch.Tensor]:
        length, size = len(inputs), self.settings.max_seq_length
        pad = size - length

        def padded(array: np.ndarray, value: int) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([array, np.full(pad, value, dtype=np.int64)]).astype(np.int64))

        sample = {
            "input_ids": padded(inputs, self.special.pad),
            "token_type_ids": padded(types, 0),
            "attention_mask": padded(np.ones(length, dtype=np.int64), 0),
            "mlm_labels": padded(labels, IGNORE_INDEX),
        }
        if self.settings.binary_head != "none":
            sample["binary_labels"] = torch.tensor(binary)
        return sample


class BlendedDataset(torch.utils.data.Dataset):
    """Samples from several datasets in the given proportions: sample i comes from the dataset furthest
    below its share so far (Megatron's rule), so the mix is exact at every prefix, not just on average."""

    def __init__(self, datasets: list[torch.utils.data.Dataset], weights: list[float], size: int) -> None:
        if len(datasets) != len(weights) or not datasets:
            raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
        if any(w <= 0 for w in weights):
            raise ValueError(f"blending weights must be positive, got {weights}")
        shares = np.asarray(weights, dtype=np.float64) / sum(weights)
        self.datasets = datasets
        self.dataset_index = np.zeros(size, dtype=np.int64)
        self.sample_index = np.zeros(size, dtype=np.int64)
        counts = np.zeros(len(datasets), dtype=np.int64)
        for i in range(size):
            d = int(np.argmax(shares * (i + 1) - counts))
            self.dataset_index[i], self.sample_index[i] = d, counts[d] % len(datasets[d])
            counts[d] += 1

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, i: int):
        return self.datasets[int(self.dataset_index[i])][int(self.sample_index[i])]


def parse_data_path(values: list[str]) -> list[tuple[float, str]]:
    """Megatron's `--data-path`: either one prefix, or `weight prefix` pairs (`0.7 abstracts 0.3 fulltext`)."""
    if len(values) == 1:
        return [(1.0, values[0])]
    if len(values) % 2:
        raise ValueError(f"data path {' '.join(values)}: give one prefix or 'weight prefix' pairs")
    pairs = []
    for weight, prefix in zip(values[::2], values[1::2], strict=True):
        try:
            pairs.append((float(weight), prefix))
        except ValueError:
            raise ValueError(f"data path: {weight!r} (before {prefix!r}) is not a weight") from None
    if any(w <= 0 for w, _ in pairs):
        raise ValueError(f"data path weights must be positive: {[w for w, _ in pairs]}")
    return pairs
