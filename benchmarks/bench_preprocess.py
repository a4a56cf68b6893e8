"""Preprocessing and loading speed on the shared PubMed / PMC text.

1. `megabio preprocess` (Punkt sentence splitting + HF tokenizers WordPiece + MMIDIDX writer) with 1 and 2
   workers, against the same pipeline in one process with transformers' pure-Python BertTokenizer
   (`BertTokenizerLegacy` in transformers 5, `BertTokenizer` before): MB/s, sentences/s, peak RSS.
2. BertDataset + DataLoader samples/s at seq 128 against what one `small`-preset training step (batch 16,
   fp32, AdamW) consumes per second, measured in the same run.

    python benchmarks/bench_preprocess.py [--data-dir ../shared/data] [--output-dir runs/preprocess]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
import transformers

from megabio.config import ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.data.indexed_dataset import IndexedDatasetWriter, optimal_dtype
from megabio.data.preprocess import PreprocessSettings, preprocess
from megabio.io.corpus import read_documents, read_id_list
from megabio.io.vocab import read_vocab
from megabio.model import BertForPretraining
from megabio.tokenizer.sentences import SentenceSplitter, save_params, train_punkt

CORPUS = ("pretrain/CHR-pubmed-abstracts", "pretrain/CRAFT-pmc-fulltext")


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def python_tokenizer_pipeline(inputs, exclude, vocab: str, punkt: Path, prefix: Path) -> tuple[float, int]:
    """The same read / split / tokenize / write pipeline with transformers' pure-Python tokenizer."""
    cls = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    tokenizer = cls(vocab, do_lower_case=False)
    splitter = SentenceSplitter.load(punkt)
    start, sentences = time.perf_counter(), 0
    with IndexedDatasetWriter(prefix, optimal_dtype(len(tokenizer))) as writer:
        for document in read_documents(inputs, exclude_ids=exclude):
            ids = [tokenizer.encode(s, add_special_tokens=False) for s in splitter.split(document.text)]
            ids = [s for s in ids if s]
            if ids:
                writer.add_document(ids)
                sentences += len(ids)
    return time.perf_counter() - start, sentences


def training_samples_per_second(vocab_size: int, steps: int = 2) -> float:
    config = ModelConfig.from_preset("small", vocab_size=vocab_size)
    model = BertForPretraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, vocab_size, (16, 128))
    labels = ids.masked_fill(torch.rand(16, 128) > 0.15, -100)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        model(ids, mlm_labels=labels, binary_labels=torch.zeros(16, dtype=torch.long))[0].backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 16 / min(times[1:])


def loader_samples_per_second(dataset: BertDataset, workers: int, batches: int = 30) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=workers, shuffle=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return 16 * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--output-dir", default="runs/preprocess")
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [data / p for p in CORPUS]
    exclude = read_id_list(data / "pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt")
    vocab = str(data / "vocab/bert-base-cased-vocab.txt")
    punkt = out / "punkt.json"
    save_params(train_punkt(d.text for d in read_documents(inputs, exclude_ids=exclude)), punkt)

    print("| pipeline | workers | MB/s | sentences/s | peak RSS MB | vs pure-Python tokenizer |")
    print("|---|---|---|---|---|---|")
    baseline_seconds, sentences = python_tokenizer_pipeline(inputs, exclude, vocab, punkt, out / "python")
    megabytes = sum(len(d.text.encode("utf-8")) for d in read_documents(inputs, exclude_ids=exclude)) / 1e6
    print(f"| transformers {getattr(transformers, 'BertTokenizerLegacy', transformers.BertTokenizer).__name__} | 1 | "
          f"{megabytes / baseline_seconds:.2f} | {sentences / baseline_seconds:,.0f} | {peak_rss_mb():.0f} | 1.0x |",
          flush=True)
    prefix = None
    for workers in (1, 2):
        settings = PreprocessSettings(vocab_file=vocab, split_sentences=True, punkt_file=str(punkt), workers=workers)
        stats = preprocess(inputs, str(out / "megabio"), settings, exclude_ids=exclude, show_progress=False)
        rss = max(peak_rss_mb(), peak_rss_mb(children=True))
        print(f"| megabio preprocess | {workers} | {megabytes / stats['seconds']:.2f} | "
              f"{stats['sequences'] / stats['seconds']:,.0f} | {rss:.0f} | "
              f"{baseline_seconds / stats['seconds']:.1f}x |", flush=True)
        prefix = stats["output_prefix"]

    vocab_tokens = read_vocab(vocab)
    dataset = BertDataset(prefix, vocab_tokens, BertSampleSettings(max_seq_length=128))
    consumed = training_samples_per_second(len(vocab_tokens))
    print(f"\n`small` training step consumes {consumed:.1f} samples/s (batch 16, seq 128, fp32)\n"
          "| loader workers | samples/s | x training consumption |\n|---|---|---|")
    for workers in (0, 2):
        rate = loader_samples_per_second(dataset, workers)
        print(f"| {workers} | {rate:,.0f} | {rate / consumed:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
