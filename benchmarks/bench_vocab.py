"""Bio-vocabularies on the shared PubMed / PMC text: build time and peak memory for 30k and 50k, tokenisation
speed with the result (megabio's fast tokenizer against transformers' BertTokenizer on the same text), and
the BioMegatron paper's Table 3 (sub-tokens per named-entity word on the BC5CDR training sets) beside the
paper's figures.

    python benchmarks/bench_vocab.py [--data-dir ../shared/data] [--output-dir runs/vocab]

Benchmark test documents (pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt) are left out of the corpus.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from transformers import BertTokenizer

from megabio.io.corpus import read_documents, read_id_list
from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab
from megabio.tokenizer.vocab_stats import vocab_stats
from megabio.tokenizer.wordpiece import load_wordpiece

CORPUS = ("pretrain/CHR-pubmed-abstracts", "pretrain/CRAFT-pmc-fulltext", "pretrain/ohsumed-text_gcn",
          "pretrain/medical-abstracts-tc/medical_tc_test.csv")
PAPER = {"BERT-cased": (3.012, 2.42), "bio-30k-cased": (1.753, 1.272), "bio-50k-cased": (1.478, 1.116)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--output-dir", default="runs/vocab")
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="bpe")
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output_dir)
    exclude = read_id_list(data / "pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt")
    inputs = [data / p for p in CORPUS]

    vocabs = {"BERT-cased": data / "vocab/bert-base-cased-vocab.txt"}
    print("| vocabulary | SentencePiece | build s | peak RSS MB | corpus MB |\n|---|---|---|---|---|")
    for size in (30000, 50000):
        name = f"bio-{size // 1000}k-cased"
        start = time.perf_counter()
        card = build_vocab(inputs, out / name, VocabSettings(vocab_size=size, model_type=args.model_type),
                           exclude_ids=exclude, overwrite=True, show_progress=False)
        vocabs[name] = out / name / "vocab.txt"
        print(f"| {name} | {args.model_type} | {time.perf_counter() - start:.1f} | {peak_rss_mb():.0f} | "
              f"{card['corpus']['text_bytes'] / 1e6:.1f} |", flush=True)

    texts = [d.text for d in read_documents([data / CORPUS[0]], exclude_ids=exclude)]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"\nTokenisation of {megabytes:.1f} MB of PubMed abstracts (MB/s)\n"
          f"| vocabulary | megabio (HF tokenizers, batch) | transformers BertTokenizer | ratio |\n|---|---|---|---|")
    for name, vocab in vocabs.items():
        fast = load_wordpiece(vocab, lower_case=False)
        start = time.perf_counter()
        fast.encode_batch(texts)
        ours = time.perf_counter() - start
        slow = BertTokenizer(str(vocab), do_lower_case=False)
        start = time.perf_counter()
        for text in texts:
            slow.encode(text)
        theirs = time.perf_counter() - start
        print(f"| {name} | {megabytes / ours:.1f} | {megabytes / theirs:.2f} | {theirs / ours:.0f}x |", flush=True)

    print("\nSub-tokens per named-entity word, BC5CDR training sets (paper's Table 3 in brackets)\n"
          "| vocabulary | BC5CDR-chem | BC5CDR-disease | [UNK] rate |\n|---|---|---|---|")
    for name, vocab in vocabs.items():
        row = []
        for dataset in ("BC5CDR-chem-IOB", "BC5CDR-disease-IOB"):
            stats = vocab_stats(vocab, [data / "ner" / dataset / "train.tsv"])["overall"]
            row.append(stats)
        paper = PAPER[name]
        print(f"| {name} | {row[0]['subtokens_per_entity_word']:.3f} ({paper[0]}) | "
              f"{row[1]['subtokens_per_entity_word']:.3f} ({paper[1]}) | "
              f"{max(r['unk_rate'] for r in row):.4%} |")


if __name__ == "__main__":
    main()
