"""NER data: IOB reading and its errors, windows that give every word exactly one prediction, the two
labelling schemes, and length-bucketed batches that cover an epoch exactly once."""

from __future__ import annotations

import itertools
import random

import pytest

from megabio.config import IGNORE_INDEX
from megabio.finetune.batching import evaluation_batches, rank_micro_batches, training_batches
from megabio.finetune.ner_data import (
    DataError,
    Sentence,
    check_known_tags,
    encode,
    label_map,
    read_conll,
    window_spans,
)
from megabio.parallel import ParallelState
from megabio.tokenizer.wordpiece import load_wordpiece

WORDS = ["the", "cat", "sat", "on", "mat", "##s", "hypo", "##tension", "drug", "un", "##ff", "##ere"]


@pytest.fixture()
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return load_wordpiece(vocab, lower_case=True)


def write(tmp_path, text, name="data.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_sentences_skips_docstart_and_keeps_line_numbers(tmp_path):
    path = write(tmp_path, "-DOCSTART-\tO\n\nthe\tO\ncat\tB-Animal\n\n\nsat\tO\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["the", "cat"], ["sat"]]
    assert [s.tags for s in sentences] == [["O", "B-Animal"], ["O"]]
    assert [s.line for s in sentences] == [3, 7]
    assert label_map(sentences) == ["O", "B-Animal"]


@pytest.mark.parametrize("text, message", [
    ("the\tO\ncat\tB\textra\n", ":2: expected `token<TAB>tag`, got 3 column"),
    ("the\tO\ncat\t \n", ":2: empty tag"),
    ("the\tO\ncat\tBX-Chem\n", ":2: 'BX-Chem' is not an IOB tag"),
    ("\n\n", "no sentences"),
])
def test_bad_iob_names_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as error:
        read_conll(path)
    assert str(path) in str(error.value)


def test_a_tag_unseen_in_training_names_the_line(tmp_path):
    dev = read_conll(write(tmp_path, "the\tO\n\ncat\tB-Animal\n", "dev.tsv"))
    with pytest.raises(DataError, match=r"dev.tsv:3: tag 'B-Animal' does not occur in the training data"):
        check_known_tags(dev, ["O"], tmp_path / "dev.tsv")


def test_long_sentence_every_word_predicted_exactly_once(tokenizer):
    rng = random.Random(0)
    words = [rng.choice(["the", "cat", "mats", "hypotension", "unffere", "zzz"]) for _ in range(500)]
    tags = [rng.choice(["O", "B-X", "I-X"]) for _ in words]
    labels = ["O", "B-X", "I-X"]
    windows = encode([Sentence(words, tags)], tokenizer, labels, seq_length=32)
    assert len(windows) > 1
    assert all(len(w.input_ids) <= 32 for w in windows)
    predicted = sorted(word for w in windows for word in w.words)
    assert predicted == list(range(500))  # every word exactly once
    for window in windows:  # the label at each predicted word's first piece is its tag
        for position, word in zip(window.first_pieces, window.words, strict=True):
            assert labels[window.labels[position]] == tags[word]
    # each word is predicted where it has context on both sides whenever another window could give it some
    for window in windows[1:-1]:
        assert window.first_pieces[0] > 1 and window.first_pieces[-1] < len(window.input_ids) - 2


def test_windows_cover_all_words_with_overlap():
    lengths = [1, 3, 2, 1, 1, 4, 2, 2, 1, 3]
    spans = window_spans(lengths, budget=6)
    assert spans[0][0] == 0 and spans[-1][1] == len(lengths)
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert s1 < s2 <= e1 < e2  # advancing, no gap
    for s, e in spans:
        assert sum(lengths[s:e]) <= 6


def test_subtoken_and_wholeword_labelling(tokenizer):
    sentence = Sentence(["unffere", "mats"], ["B-X", "O"])  # un ##ff ##ere / mat ##s
    labels = ["O", "B-X"]
    sub = encode([sentence], tokenizer, labels, 16, "subtoken")[0]
    whole = encode([sentence], tokenizer, labels, 16, "wholeword")[0]
    assert len(sub.input_ids) == 7  # [CLS] un ##ff ##ere mat ##s [SEP]
    assert sub.labels == [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]
    assert whole.labels == [IGNORE_INDEX, 1, 1, 1, 0, 0, IGNORE_INDEX]
    assert sub.first_pieces == whole.first_pieces == [1, 4]


def test_an_untokenizable_word_still_gets_a_piece(tokenizer):
    window = encode([Sentence(["the", "\u200b", "cat"], ["O", "O", "O"])], tokenizer, ["O"], 16)[0]
    assert window.words == [0, 1, 2]


def test_batches_cover_the_epoch_once_sorted_within_buckets():
    rng = random.Random(1)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    batches = training_batches(lengths, 8, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in batches)
    assert batches != training_batches(lengths, 8, seed=3, epoch=1)  # reshuffled each epoch
    assert batches == training_batches(lengths, 8, seed=3, epoch=0)
    assert sorted(i for b in evaluation_batches(lengths, 8) for i in b) == list(range(1000))
    shares = [rank_micro_batches(list(range(8)), 2, ParallelState(dp_size=2, dp_rank=r)) for r in (0, 1)]
    assert sorted(i for share in shares for m in share for i in m) == list(range(8))


def test_random_batches_mix_lengths():
    """Without length grouping every batch spans lengths as a random sample does; with it, a narrow band."""
    rng = random.Random(2)
    lengths = [rng.randint(3, 120) for _ in range(1000)]

    def mean_spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    grouped = training_batches(lengths, 8, seed=3, epoch=0)
    shuffled = training_batches(lengths, 8, seed=3, epoch=0, group_by_length=False)
    assert sorted(i for b in shuffled for i in b) == list(range(1000))
    assert len(shuffled) == len(grouped)
    assert mean_spread(shuffled) > 60 > 10 > mean_spread(grouped)
