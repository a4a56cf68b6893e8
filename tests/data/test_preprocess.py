"""`megabio preprocess`: every input format into one indexed dataset with BertTokenizer's ids, identical
output for any worker count, nothing left behind by a failed run."""

from __future__ import annotations

import gzip
import json

import pytest
from transformers import BertTokenizer

from megabio.cli import main
from megabio.data.indexed_dataset import IndexedDataset
from megabio.data.preprocess import PreprocessSettings, encode_documents, preprocess
from megabio.io.corpus import CorpusError, read_documents
from megabio.tokenizer.sentences import SentenceSplitter, save_params, train_punkt
from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab
from tests.shared_data import shared_data
from tests.tokenizer.test_vocab_builder import write_corpus

PUBMED_XML = """<?xml version="1.0"?>
<PubmedArticleSet>
<PubmedArticle><MedlineCitation><PMID Version="1">301</PMID><Article>
<ArticleTitle>Cisplatin nephrotoxicity in rats.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND">Cisplatin was given i.v. to rats.</AbstractText>
<AbstractText Label="RESULTS">Toxicity was reduced by hydroxyethyl compounds. It was dose dependent.</AbstractText>
</Abstract></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">302</PMID><Article>
<ArticleTitle>Excluded benchmark abstract.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
</PubmedArticleSet>
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocess")
    lines = write_corpus(root / "vocab_corpus.txt", sentences=600)
    build_vocab([root / "vocab_corpus.txt"], root / "vocab", VocabSettings(vocab_size=300), show_progress=False)
    save_params(train_punkt(lines), root / "punkt.json")
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines[:40]), encoding="utf-8")
    (inputs / "b.txt").write_text("\n".join(lines[40:80]) + "\n", encoding="utf-8")
    (inputs / "c.pubtator").write_text("201|t|Cisplatin was reduced.\n201|a|" + lines[80] + "\n\n", encoding="utf-8")
    with gzip.open(inputs / "pubmed25n0001.xml.gz", "wt", encoding="utf-8") as handle:
        handle.write(PUBMED_XML)
    settings = PreprocessSettings(vocab_file=str(root / "vocab" / "vocab.txt"), split_sentences=True,
                                  punkt_file=str(root / "punkt.json"))
    return root, inputs, settings


def test_all_formats_with_bert_tokenizer_ids(workspace):
    root, inputs, settings = workspace
    stats = preprocess([inputs], str(root / "out"), settings, exclude_ids={"302"}, show_progress=False)
    dataset = IndexedDataset(stats["output_prefix"])
    documents = list(read_documents([inputs], exclude_ids={"302"}))
    assert dataset.num_documents == len(documents) == stats["documents"] == 82
    splitter = SentenceSplitter.load(settings.punkt_file)
    reference = BertTokenizer(settings.vocab_file, do_lower_case=False)
    for d, document in enumerate(documents):
        expected = [reference.encode(s, add_special_tokens=False) for s in splitter.split(document.text)]
        assert [s.tolist() for s in dataset.document(d)] == expected, document.source
    xml_document = next(d for d in documents if d.doc_id == "301")
    assert xml_document.text.startswith("Cisplatin nephrotoxicity in rats. Cisplatin was given i.v. to rats.")


def test_worker_count_does_not_change_the_bytes(workspace):
    root, inputs, settings = workspace
    outputs = []
    for workers in (1, 2):
        run = PreprocessSettings(**{**settings.__dict__, "workers": workers})
        prefix = preprocess([inputs], str(root / f"w{workers}"), run, show_progress=False)["output_prefix"]
        outputs.append([open(f"{prefix}{s}", "rb").read() for s in (".bin", ".idx")])
    assert outputs[0] == outputs[1]


def test_failed_run_leaves_no_files(workspace, tmp_path):
    _, inputs, settings = workspace
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff broken\n")
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=r"bad\.txt:2"):
        preprocess([inputs, bad], str(out / "corpus"), settings, show_progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_sentences_split_out_of_the_box(workspace, tmp_path):
    """Without Punkt parameters of its own (and no nltk model), the shipped biomedical model splits."""
    _, inputs, settings = workspace
    stats = preprocess([inputs], str(tmp_path / "x"), PreprocessSettings(vocab_file=settings.vocab_file,
                                                                        split_sentences=True), show_progress=False)
    dataset = IndexedDataset(stats["output_prefix"])
    assert len(dataset) > dataset.num_documents  # more sentences than documents


def test_cli_and_missing_vocabulary(workspace, tmp_path, capsys):
    _, inputs, settings = workspace
    assert main(["preprocess", "--input", str(inputs), "--vocab", settings.vocab_file, "--output-prefix",
                 str(tmp_path / "cli"), "--workers", "1"]) == 0
    assert IndexedDataset(tmp_path / "cli_text_document").num_documents == 83
    assert main(["preprocess", "--input", str(inputs), "--vocab", str(tmp_path / "none.txt"), "--output-prefix",
                 str(tmp_path / "x")]) == 2
    assert "vocabulary file not found" in capsys.readouterr().err


@pytest.mark.parametrize("vocab, lower_case", [("bert-base-cased-vocab.txt", False),
                                               ("bert-base-uncased-vocab.txt", True)])
def test_wordpiece_matches_bert_tokenizer_on_real_pubmed(vocab, lower_case, tmp_path):
    texts = [d.text for d in read_documents([shared_data("pretrain/CHR-pubmed-abstracts")])]
    save_params(train_punkt(texts[:300]), tmp_path / "punkt.json")
    splitter = SentenceSplitter.load(tmp_path / "punkt.json")
    sentences = [s for t in texts[:200] for s in splitter.split(t)][:1000]
    assert len(sentences) == 1000
    settings = PreprocessSettings(vocab_file=str(shared_data("vocab", vocab)), lower_case=lower_case)
    ours = [doc[0] for doc in encode_documents(sentences, settings)]
    for reference in reference_tokenizers(settings.vocab_file, lower_case):
        assert ours == [reference.encode(s, add_special_tokens=False) for s in sentences], type(reference)


def reference_tokenizers(vocab_file: str, lower_case: bool) -> list:
    """transformers' BertTokenizer and, where transformers still ships it, its pure-Python implementation."""
    import transformers

    classes = [BertTokenizer] + [c for c in [getattr(transformers, "BertTokenizerLegacy", None)] if c is not None]
    return [cls(vocab_file, do_lower_case=lower_case) for cls in classes]
