"""Corpus reading: formats, gzip, directories, exclusion, and errors that name the file and line."""

from __future__ import annotations

import gzip
import json

import pytest

from megabio.io.corpus import CorpusError, read_documents, read_id_list


def test_plain_jsonl_pubtator_gzip_and_directories(tmp_path):
    (tmp_path / "plain.txt").write_text("First document.\n\nSecond document.\n", encoding="utf-8")
    (tmp_path / "docs.jsonl").write_text(
        json.dumps({"text": "From JSON.", "pmid": "7"}) + "\n" + json.dumps({"text": "Dropped.", "pmid": "8"}) + "\n",
        encoding="utf-8")
    with gzip.open(tmp_path / "abstracts.pubtator.gz", "wt", encoding="utf-8") as handle:
        handle.write("11|t|A title.\n11|a|An abstract.\n11\t0\t1\tA\tChemical\tD1\n\n"
                     "12|t|Excluded title.\n12|a|Excluded.\n")
    nested = tmp_path / "more"
    nested.mkdir()
    (nested / "doc").write_text("No suffix.\n", encoding="utf-8")
    (nested / "doc.copyright").write_text("Not text to read.\n", encoding="utf-8")
    documents = list(read_documents([tmp_path], exclude_ids={"8", "12"}))
    assert [d.text for d in documents] == [
        "A title. An abstract.", "From JSON.", "No suffix.", "First document.", "Second document."]
    assert documents[0].doc_id == "11" and documents[0].source.endswith("abstracts.pubtator.gz:1")


def test_undecodable_bytes_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond \xff\xfe line\n")
    with pytest.raises(CorpusError, match=r"bad\.txt:2: not valid UTF-8"):
        list(read_documents([bad]))


def test_bad_json_and_missing_key(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"broken\.jsonl:2: not valid JSON"):
        list(read_documents([broken]))
    with pytest.raises(CorpusError, match=r"broken\.jsonl:1: no 'body' field"):
        list(read_documents([broken], json_key="body"))


def test_missing_path_and_id_list(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        list(read_documents([tmp_path / "absent.txt"]))
    ids = tmp_path / "ids.txt"
    ids.write_text("123\tBC5CDR-test\n\n456 other\n", encoding="utf-8")
    assert read_id_list(ids) == {"123", "456"}
