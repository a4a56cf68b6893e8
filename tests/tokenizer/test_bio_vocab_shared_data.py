"""On the shared PubMed text: bio vocabularies built here fragment BC5CDR entity words less than BERT-cased,
and 50k less than 30k (the paper's Table 3 ordering); real text tokenizes without [UNK] and identically to
transformers' BertTokenizer."""

from __future__ import annotations

import pytest
from transformers import BertTokenizer

from megabio.io.corpus import read_documents, read_id_list
from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab
from megabio.tokenizer.vocab_stats import vocab_stats
from megabio.tokenizer.wordpiece import load_wordpiece
from tests.shared_data import shared_data

# Training text: PMC full text and OHSUMED abstracts; CHR PubMed abstracts are held out for evaluation.
# BPE, because ~14 MB of text supports only ~45k unigram pieces.
TRAINING = ("pretrain/CRAFT-pmc-fulltext", "pretrain/ohsumed-text_gcn")
HELD_OUT = "pretrain/CHR-pubmed-abstracts"


@pytest.fixture(scope="module")
def bio_vocabs(tmp_path_factory):
    inputs = [shared_data(p) for p in TRAINING]
    exclude = read_id_list(shared_data("pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt"))
    out = tmp_path_factory.mktemp("vocabs")
    vocabs = {}
    for size in (30000, 50000):
        vocabs[size] = out / f"bio-{size // 1000}k-cased"
        build_vocab(inputs, vocabs[size], VocabSettings(vocab_size=size, model_type="bpe"), exclude_ids=exclude,
                    show_progress=False)
    return vocabs


def held_out_sentences(limit: int = 1000) -> list[str]:
    exclude = read_id_list(shared_data("pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt"))
    sentences = []
    for document in read_documents([shared_data(HELD_OUT)], exclude_ids=exclude):
        sentences += [s.strip() + "." for s in document.text.split(". ") if s.strip()]
        if len(sentences) >= limit:
            break
    return sentences[:limit]


@pytest.mark.parametrize("dataset", ["BC5CDR-chem-IOB", "BC5CDR-disease-IOB"])
def test_table3_ordering(bio_vocabs, dataset):
    iob = [shared_data("ner", dataset, "train.tsv")]
    bert = vocab_stats(shared_data("vocab/bert-base-cased-vocab.txt"), iob)["overall"]
    bio30 = vocab_stats(bio_vocabs[30000] / "vocab.txt", iob)["overall"]
    bio50 = vocab_stats(bio_vocabs[50000] / "vocab.txt", iob)["overall"]
    rates = [s["subtokens_per_entity_word"] for s in (bert, bio30, bio50)]
    assert rates[0] > rates[1] > rates[2], f"BERT-cased, bio-30k, bio-50k sub-tokens per entity word: {rates}"


def test_held_out_pubmed_text_has_almost_no_unk_and_matches_bert_tokenizer(bio_vocabs):
    sentences = held_out_sentences()
    assert len(sentences) == 1000
    vocab = bio_vocabs[30000] / "vocab.txt"
    ours = load_wordpiece(vocab, lower_case=False)
    theirs = BertTokenizer(str(vocab), do_lower_case=False)
    encodings = ours.encode_batch(sentences)
    pieces = sum(len(e.ids) - 2 for e in encodings)
    unknown = sum(e.ids.count(1) for e in encodings)
    assert unknown / pieces < 0.001, f"[UNK] rate {unknown / pieces:.4%} on held-out PubMed text"
    for sentence, encoding in zip(sentences, encodings, strict=True):
        assert encoding.ids == theirs.encode(sentence), sentence
