"""Sub-tokens per word and [UNK] rate on a hand-computed case."""

from __future__ import annotations

import json

import pytest

from megabio.cli import main
from megabio.io.corpus import CorpusError
from megabio.tokenizer.vocab_stats import vocab_stats


@pytest.fixture
def vocab_and_iob(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "asp", "##irin", "head", "##ache",
                                "the", "pain"]) + "\n", encoding="utf-8")
    iob = tmp_path / "train.tsv"
    iob.write_text("aspirin\tB-Chemical\nthe\tO\n\nheadache\tB-Disease\nxyz\tO\npain\tI-Disease\n",
                   encoding="utf-8")
    return vocab, iob


def test_hand_computed_statistics(vocab_and_iob):
    vocab, iob = vocab_and_iob
    stats = vocab_stats(vocab, [iob])["overall"]
    # aspirin -> asp ##irin (2), the (1), headache -> head ##ache (2), xyz -> [UNK] (1), pain (1)
    assert stats["words"] == 5 and stats["entity_words"] == 3
    assert stats["subtokens_per_word"] == pytest.approx(7 / 5)
    assert stats["subtokens_per_entity_word"] == pytest.approx(5 / 3)
    assert stats["unk_rate"] == pytest.approx(1 / 7, abs=1e-6)
    top = stats["most_fragmented_entity_words"][0]
    assert top["word"] in ("aspirin", "headache") and len(top["subtokens"]) == 2


def test_cli_prints_json_and_rejects_bad_lines(vocab_and_iob, tmp_path, capsys):
    vocab, iob = vocab_and_iob
    assert main(["vocab", "stats", "--vocab", str(vocab), "--iob", str(iob)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vocab_size"] == 11 and str(iob) in report["files"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("word\tO\nno-tab-here\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.tsv:2"):
        vocab_stats(vocab, [bad])
    assert main(["vocab", "stats", "--vocab", str(tmp_path / "nope.txt"), "--iob", str(iob)]) == 2
