"""Punkt trained on real PubMed text splits sentences but never after biomedical abbreviations."""

from __future__ import annotations

import re

import pytest

from megabio.io.corpus import read_documents, read_id_list
from megabio.tokenizer.sentences import SentenceSplitter, load_params, save_params, train_punkt
from tests.shared_data import shared_data

ABBREVIATIONS = ("i.v.", "et al.", "Fig.", "vs.", "e.g.", "i.e.", "i.p.", "approx.")


@pytest.fixture(scope="module")
def splitter_and_texts(tmp_path_factory):
    exclude = read_id_list(shared_data("pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt"))
    texts = [d.text for d in read_documents([shared_data("pretrain/CHR-pubmed-abstracts"),
                                             shared_data("pretrain/CRAFT-pmc-fulltext")], exclude_ids=exclude)]
    path = tmp_path_factory.mktemp("punkt") / "punkt.json"
    save_params(train_punkt(texts), path)
    return SentenceSplitter.load(path), texts


def test_abbreviations_never_end_a_sentence_in_real_text(splitter_and_texts):
    splitter, texts = splitter_and_texts
    checked = 0
    for text in texts:
        if not any(a in text for a in ABBREVIATIONS):
            continue
        for sentence in splitter.split(text)[:-1]:  # the last sentence may legitimately end the text
            for abbreviation in ABBREVIATIONS:
                assert not sentence.endswith(" " + abbreviation), f"split after {abbreviation!r}: {sentence[-80:]}"
        checked += 1
    assert checked > 50, "too few real examples with abbreviations"


def test_constructed_cases(splitter_and_texts):
    splitter, _ = splitter_and_texts
    text = ("Rats received 5 mg/kg i.v. injections of cisplatin. Smith et al. reported similar effects (Fig. 2) "
            "in mice vs. controls, e.g. in the kidney. The effect was dose dependent. Another sentence starts here.")
    sentences = splitter.split(text)
    assert sentences == [
        "Rats received 5 mg/kg i.v. injections of cisplatin.",
        "Smith et al. reported similar effects (Fig. 2) in mice vs. controls, e.g. in the kidney.",
        "The effect was dose dependent.", "Another sentence starts here."]


def test_real_abstracts_are_split(splitter_and_texts):
    splitter, texts = splitter_and_texts
    counts = [len(splitter.split(t)) for t in texts[:200]]
    assert sum(counts) / len(counts) > 3, "abstracts should have several sentences"
    assert all(re.search(r"[.?!)\]\"']$", s) for t in texts[:20] for s in splitter.split(t)[:-1])


def test_bad_parameter_file(tmp_path):
    bad = tmp_path / "punkt.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="not a Punkt parameter file"):
        load_params(bad)


def test_the_shipped_model_splits_biomedical_text():
    splitter = SentenceSplitter.shipped()
    text = ("Rats received 5 mg/kg i.v. every day. Smith et al. reported a similar effect (Fig. 2). "
            "The dose was lowered vs. controls. No toxicity was seen.")
    assert splitter.split(text) == ["Rats received 5 mg/kg i.v. every day.",
                                    "Smith et al. reported a similar effect (Fig. 2).",
                                    "The dose was lowered vs. controls.", "No toxicity was seen."]


def test_same_model_and_boundaries_as_stock_nltk_punkt(splitter_and_texts):
    """The splitter runs Punkt's patterns on the standard `re` engine: the learned parameters and every
    sentence boundary must equal those of nltk's own PunktTrainer / PunktSentenceTokenizer."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

    from megabio.tokenizer.sentences import BIOMEDICAL_ABBREVIATIONS

    _, texts = splitter_and_texts
    texts = texts[:300]
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train("\n\n".join(texts), finalize=False)
    trainer.finalize_training()
    stock = trainer.get_params()
    stock.abbrev_types.update(BIOMEDICAL_ABBREVIATIONS)
    ours = train_punkt(texts)
    assert (ours.abbrev_types, ours.collocations, ours.sent_starters, dict(ours.ortho_context)) == \
        (stock.abbrev_types, stock.collocations, stock.sent_starters, dict(stock.ortho_context))
    reference = PunktSentenceTokenizer(stock)
    splitter = SentenceSplitter(ours)
    for text in texts:
        assert list(splitter._tokenizer.span_tokenize(text)) == list(reference.span_tokenize(text))
