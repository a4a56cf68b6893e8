"""Building a WordPiece vocabulary with SentencePiece: format, exact size, tokenizer agreement, errors."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from transformers import BertTokenizer

from megabio.cli import main
from megabio.io.corpus import CorpusError
from megabio.tokenizer.vocab_builder import VocabError, VocabSettings, build_vocab
from megabio.tokenizer.wordpiece import SPECIAL_TOKENS, load_wordpiece

SYLLABLES = ("ami", "no", "phen", "yl", "cyclo", "hex", "ane", "chlor", "ide", "meth", "ox", "ol", "ine", "prop",
             "ethyl", "keto", "hydro", "fluor", "benz", "azole", "pyr", "idine", "Cis", "plat", "in", "IL", "-6")
FILLER = ("the", "of", "in", "patients", "with", "was", "induced", "by", ",", ".", "(", ")", "reduced")


def write_corpus(path, sentences=400, seed=0):
    """Sentences of filler words and made-up chemical names, so the corpus supports a few hundred pieces."""
    rng = random.Random(seed)

    def word():
        if rng.random() < 0.5:
            return rng.choice(FILLER)
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))

    lines = [" ".join(word() for _ in range(rng.randint(5, 20))) for _ in range(sentences)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
@pytest.mark.parametrize("lower_case", [False, True])
def test_build_gives_exact_size_bert_format_and_card(tmp_path, model_type, lower_case):
    corpus = tmp_path / "corpus.txt"
    lines = write_corpus(corpus)
    settings = VocabSettings(vocab_size=150, model_type=model_type, lower_case=lower_case)
    card = build_vocab([corpus], tmp_path / "out", settings, show_progress=False)
    vocab = (tmp_path / "out" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == len(set(vocab)) == 150 == card["vocab_size"]
    assert tuple(vocab[:5]) == SPECIAL_TOKENS
    assert all(" " not in token and token != "##" for token in vocab)
    text = " ".join(lines)
    for char in set(text.lower() if lower_case else text) - {" "}:
        assert char in vocab and "##" + char in vocab, f"character {char!r} missing a form"
    assert card["corpus"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert card["settings"]["model_type"] == model_type
    assert json.loads((tmp_path / "out" / "vocab_card.json").read_text())["vocab_size"] == 150
    assert (tmp_path / "out" / "spm.model").is_file()
    assert [p.name for p in tmp_path.iterdir()] != [] and not [p for p in tmp_path.iterdir()
                                                               if p.name.startswith(".out.tmp")]
    # The vocabulary works unchanged with megabio's tokenizer and transformers' BertTokenizer, without [UNK].
    ours = load_wordpiece(tmp_path / "out" / "vocab.txt", lower_case)
    theirs = BertTokenizer(str(tmp_path / "out" / "vocab.txt"), do_lower_case=lower_case)
    for line in lines[:50]:
        ids = ours.encode(line).ids
        assert ids == theirs.encode(line)
        assert 1 not in ids  # [UNK]


def test_existing_output_needs_overwrite_and_is_replaced_whole(tmp_path):
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus)
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old", encoding="utf-8")
    with pytest.raises(VocabError, match="exists: choose another directory or overwrite it"):
        build_vocab([corpus], out, VocabSettings(vocab_size=120), show_progress=False)
    build_vocab([corpus], out, VocabSettings(vocab_size=120), overwrite=True, show_progress=False)
    assert not (out / "stale.txt").exists() and (out / "vocab.txt").is_file()


def test_bad_inputs_fail_clearly_and_leave_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(VocabError, match="corpus is empty"):
        build_vocab([empty], tmp_path / "a", VocabSettings(vocab_size=100), show_progress=False)
    small = tmp_path / "small.txt"
    write_corpus(small, sentences=20)
    with pytest.raises(VocabError, match="vocab_size 5000"):
        build_vocab([small], tmp_path / "b", VocabSettings(vocab_size=5000), show_progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good text here\n\xc3\x28 broken\n")
    with pytest.raises(CorpusError, match=r"bad\.txt:2"):
        build_vocab([bad], tmp_path / "c", VocabSettings(vocab_size=100), show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "empty.txt", "small.txt"]
    # The command line reports the same errors with exit status 2.
    assert main(["vocab", "build", "--input", str(empty), "--output-dir", str(tmp_path / "d"),
                 "--vocab-size", "100"]) == 2
    assert "corpus is empty" in capsys.readouterr().err
    assert main(["vocab", "build", "--input", str(tmp_path / "missing.txt"), "--output-dir",
                 str(tmp_path / "d")]) == 2
    assert "no such file" in capsys.readouterr().err
