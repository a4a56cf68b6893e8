"""Line reading for every text input: bytes that are not UTF-8 are an error naming the file and line, in
the pretraining corpus reader and in each fine-tuning and vocabulary reader alike."""

from __future__ import annotations

import gzip

import pytest

from megabio.config import ConfigError
from megabio.finetune.ner_data import read_conll
from megabio.finetune.re_data import read_instances
from megabio.io.text import numbered_lines
from megabio.io.vocab import read_vocab
from megabio.tokenizer.vocab_stats import read_iob


def test_lines_are_numbered_without_their_ends_plain_or_gzip(tmp_path):
    text = "first\r\nsecond\n\nfourth"
    (tmp_path / "a.txt").write_bytes(text.encode())
    with gzip.open(tmp_path / "a.txt.gz", "wb") as handle:
        handle.write(text.encode())
    expected = list(enumerate(text.replace("\r", "").split("\n"), start=1))
    assert list(numbered_lines(tmp_path / "a.txt")) == expected
    assert list(numbered_lines(tmp_path / "a.txt.gz")) == expected


@pytest.mark.parametrize("reader", [read_conll, read_instances, read_vocab, lambda p: list(read_iob(p)),
                                    lambda p: list(numbered_lines(p))],
                         ids=["conll", "relation tsv", "vocab", "vocab-stats iob", "lines"])
def test_bytes_that_are_not_utf8_are_named_by_file_and_line(tmp_path, reader):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"aspirin\tB-Chemical\n" + "caf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"bad\.tsv:2: not valid UTF-8 \(invalid continuation byte at column 4\)"):
        reader(path)


def test_a_broken_gzip_file_is_named(tmp_path):
    path = tmp_path / "broken.txt.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match=r"broken\.txt\.gz: cannot read"):
        list(numbered_lines(path))
