"""BERT samples: the sample map (C++ = Python), packing, masking statistics, whole words, SOP/NSP balance,
determinism across loader workers, blending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megabio.data import _helpers
from megabio.data.bert_dataset import BertDataset, BertSampleSettings, BlendedDataset, parse_data_path
from megabio.data.indexed_dataset import IndexedDatasetWriter
from megabio.data.sample_mapping import build_mapping_reference
from megabio.model import IGNORE_INDEX

# A toy vocabulary: specials, 300 word-initial pieces and 200 continuation pieces.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(300)] + \
        [f"##c{i}" for i in range(200)]
FIRST_CONTINUATION = 305


def random_corpus(prefix, documents=300, seed=0):
    rng = np.random.RandomState(seed)
    with IndexedDatasetWriter(prefix) as writer:
        for _ in range(documents):
            sentences = []
            for _ in range(rng.randint(1, 12)):
                words = [[rng.randint(5, 305), *rng.randint(305, 505, size=rng.randint(0, 3))]
                         for _ in range(rng.randint(3, 25))]
                sentences.append([t for word in words for t in word])
            writer.add_document(sentences)
    return prefix


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return random_corpus(tmp_path_factory.mktemp("bert") / "corpus")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpp_mapping_equals_python_reference(seed):
    rng = np.random.RandomState(seed)
    counts = rng.randint(1, 9, size=200)
    document_index = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sizes = rng.randint(1, 90, size=document_index[-1]).astype(np.int32)
    sizes[5] = 600  # a too-long sentence drops its document
    for epochs, limit, ratio, min_sentences in ((1, 0, 10, 2), (3, 250, 5, 1), (2, 0, 0, 2)):
        args = (document_index, sizes, epochs, limit, 125, ratio, 1234 + seed, min_sentences, 512)
        ours, reference = _helpers.build_mapping(*args), build_mapping_reference(*args)
        assert ours.shape[1] == 3 and len(ours) > 0
        np.testing.assert_array_equal(ours, reference)


def test_samples_fit_and_are_well_formed(corpus):
    settings = BertSampleSettings(max_seq_length=64)
    dataset = BertDataset(corpus, VOCAB, settings)
    for i in range(0, len(dataset), 7):
        sample = dataset[i]
        ids, mask, types = sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]
        assert ids.shape == (64,)
        length = int(mask.sum())
        assert ids[0] == 2 and ids[length - 1] == 3 and (ids[length:] == 0).all()
        assert int((ids[:length] == 3).sum()) == 2 - int((sample["mlm_labels"][:length] == 3).sum())
        assert types[:length].tolist() == sorted(types[:length].tolist()) and types[0] == 0 and types[length - 1] == 1
        labels = sample["mlm_labels"]
        assert not ((labels != IGNORE_INDEX) & (torch.tensor([2, 3, 0]).unsqueeze(1) == labels).any(0)).any()


def test_masking_rate_and_80_10_10(corpus):
    dataset = BertDataset(corpus, VOCAB, BertSampleSettings(max_seq_length=128, whole_word_masking=False,
                                                            num_epochs=40))
    tokens = masked = as_mask = kept = 0
    for i in range(len(dataset)):
        if tokens >= 100_000:
            break
        sample = dataset[i]
        length = int(sample["attention_mask"].sum())
        labelled = sample["mlm_labels"] != IGNORE_INDEX
        tokens += length - 3
        masked += int(labelled.sum())
        as_mask += int((sample["input_ids"][labelled] == 4).sum())
        kept += int((sample["input_ids"][labelled] == sample["mlm_labels"][labelled]).sum())
    assert tokens >= 100_000
    assert abs(masked / tokens - 0.15) < 0.01, masked / tokens
    assert abs(as_mask / masked - 0.8) < 0.02 and abs(kept / masked - 0.1) < 0.02


def test_whole_word_masking_masks_whole_words(corpus):
    dataset = BertDataset(corpus, VOCAB, BertSampleSettings(max_seq_length=96, max_ngram=3))
    for i in range(300):
        sample = dataset[i]
        labels, inputs = sample["mlm_labels"], sample["input_ids"]
        original = torch.where(labels != IGNORE_INDEX, labels, inputs)
        labelled = (labels != IGNORE_INDEX).tolist()
        for position in range(1, int(sample["attention_mask"].sum())):
            # A continuation piece shares its word's fate (unless truncation cut its word off at a segment edge).
            if original[position] >= FIRST_CONTINUATION and original[position - 1] >= 5:
                assert labelled[position] == labelled[position - 1], (i, position)


@pytest.mark.parametrize("head", ["sop", "nsp"])
def test_binary_labels_are_balanced(corpus, head):
    dataset = BertDataset(corpus, VOCAB, BertSampleSettings(max_seq_length=64, binary_head=head, num_epochs=5))
    labels = [int(dataset[i]["binary_labels"]) for i in range(min(2000, len(dataset)))]
    assert abs(np.mean(labels) - 0.5) < 0.05


def test_same_samples_for_any_number_of_workers(corpus):
    dataset = BertDataset(corpus, VOCAB, BertSampleSettings(max_seq_length=64))
    subset = torch.utils.data.Subset(dataset, range(64))
    batches = []
    for workers in (0, 1, 2):
        loader = torch.utils.data.DataLoader(subset, batch_size=16, num_workers=workers)
        batches.append(torch.cat([b["input_ids"] for b in loader]))
    assert torch.equal(batches[0], batches[1]) and torch.equal(batches[0], batches[2])


def test_mapping_is_cached(corpus):
    settings = BertSampleSettings(max_seq_length=48, seed=99)
    BertDataset(corpus, VOCAB, settings)
    cached = list(corpus.parent.glob("corpus_bert_map_*.npy"))
    assert cached
    mtimes = [p.stat().st_mtime_ns for p in cached]
    BertDataset(corpus, VOCAB, settings)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes


def test_blending_weights(tmp_path):
    datasets = [list(range(100)), list(range(1000, 1050))]
    blended = BlendedDataset(datasets, [0.7, 0.3], size=10_000)
    share = np.mean([blended[i] >= 1000 for i in range(len(blended))])
    assert abs(share - 0.3) < 0.01 * 0.3
    with pytest.raises(ValueError, match="positive"):
        BlendedDataset(datasets, [1.0, 0.0], 10)


def test_parse_data_path():
    assert parse_data_path(["corpus"]) == [(1.0, "corpus")]
    assert parse_data_path(["0.7", "abstracts", "0.3", "fulltext"]) == [(0.7, "abstracts"), (0.3, "fulltext")]
    with pytest.raises(ValueError, match="not a weight"):
        parse_data_path(["abstracts", "0.7"])
    with pytest.raises(ValueError, match="pairs"):
        parse_data_path(["0.7", "a", "0.3"])
