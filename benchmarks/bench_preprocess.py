"""Preprocessing speed against Megatron-LM, side by side, and loading speed.

1. `megabio preprocess` against Megatron-LM's own `tools/preprocess_data.py` when MEGATRON_LM_DIR points at
   a Megatron-LM checkout (tag core_r0.9.0 runs on CPU here). Same input: the shared PubMed abstracts, PMC
   full text, OHSUMED and Medical Abstracts text as one JSON-lines file (about 19 MB), then 4 copies of it;
   same uncased BERT vocabulary, 2 workers, document and sentence level. Both split sentences with the same
   Punkt parameters (megabio's shipped model, handed to Megatron-LM as nltk's `english.pickle`). Every run is
   a fresh process timed by the wall clock, start-up included; peak RSS is that of the largest process of
   its tree. Megatron-LM at sentence level takes two invocations (the first writes `<input>_ss.jsonl` and
   stops, the second encodes it): both are timed. nltk 3.9 and later refuse to unpickle Punkt models, so
   MEGATRON_PYTHON may name an interpreter with nltk < 3.9 for Megatron-LM (it also needs torch, numpy,
   six, pyyaml, einops and packaging); by default this one runs it. Prints MB/s, sentences/s, peak RSS, the
   ratio and whether the two outputs are byte-identical.
   Without MEGATRON_LM_DIR the peer is the same pipeline in one process with transformers' pure-Python
   BertTokenizer (`BertTokenizerLegacy` in transformers 5).
2. BertDataset + DataLoader samples/s at seq 128 against what one `small`-preset training step (batch 16,
   fp32, AdamW) consumes per second, measured in the same run.

    [MEGATRON_LM_DIR=Megatron-LM MEGATRON_PYTHON=python3] python benchmarks/bench_preprocess.py \
        [--data-dir ../shared/data] [--scales 1 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from megabio.config import ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.data.indexed_dataset import IndexedDataset, IndexedDatasetWriter, optimal_dtype
from megabio.io.corpus import read_documents, read_id_list
from megabio.io.vocab import read_vocab
from megabio.model import BertForPretraining
from megabio.tokenizer.sentences import SHIPPED_PARAMS, SentenceSplitter

MEGABIO = "import sys; from megabio.cli import main; sys.exit(main())"
# Run under Megatron-LM's interpreter: megabio's Punkt parameters (JSON) as the pickle nltk loads.
PUNKT_PICKLE = """
import gzip, json, pickle, sys
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
data = json.loads(gzip.decompress(open(sys.argv[1], "rb").read()))
params = PunktParameters()
params.abbrev_types, params.sent_starters = set(data["abbrev_types"]), set(data["sent_starters"])
params.collocations = {tuple(pair) for pair in data["collocations"]}
params.ortho_context.update({word: int(flags) for word, flags in data["ortho_context"].items()})
pickle.dump(PunktSentenceTokenizer(params), open(sys.argv[2], "wb"))
"""


def corpus_texts(data: Path):
    """The shared pretraining text, a document at a time."""
    pretrain = data / "pretrain"
    exclude = read_id_list(pretrain / "ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt")
    for document in read_documents([pretrain / "CHR-pubmed-abstracts"], exclude_ids=exclude):
        yield document.text
    files = sorted((pretrain / "CRAFT-pmc-fulltext" / "txt").glob("*.txt"))
    files += sorted(p for p in (pretrain / "ohsumed-text_gcn").rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    for path in files:
        yield path.read_text(encoding="utf-8")
    with open(pretrain / "medical-abstracts-tc" / "medical_tc_test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield row["medical_abstract"]


def write_corpus(data: Path, path: Path, copies: int) -> None:
    lines = [json.dumps({"text": text}) + "\n" for text in corpus_texts(data)]
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(copies):
            handle.writelines(lines)


# Started from a small process: Linux counts the memory a child had before exec (here this benchmark's own,
# with torch loaded) in its peak RSS, so the launcher reports the peak of the command's process tree alone.
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def timed(command: list[str], log: Path, env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the largest process of its tree) of `command`; exits with its log on
    failure."""
    start = time.perf_counter()
    with open(log, "wb") as output:
        launched = subprocess.run([sys.executable, "-c", LAUNCHER, *command], stdout=subprocess.PIPE,
                                  stderr=output, env=env)
    seconds = time.perf_counter() - start
    if launched.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{log.read_text(errors='replace')[-3000:]}")
    return seconds, int(launched.stdout) / 1024


def megabio_run(corpus: Path, prefix: Path, vocab: str, sentences: bool, workers: int) -> tuple[float, float]:
    command = [sys.executable, "-c", MEGABIO, "preprocess", "--input", str(corpus), "--json-keys", "text",
               "--vocab", vocab, "--lower-case", "--output-prefix", str(prefix), "--workers", str(workers)]
    if sentences:
        command += ["--split-sentences", "--punkt", str(SHIPPED_PARAMS)]
    return timed(command, prefix.with_suffix(".log"))


def megatron_run(megatron: Path, python: str, corpus: Path, prefix: Path, vocab: str, sentences: bool,
                 workers: int, nltk_data: Path) -> tuple[float, float]:
    command = [python, str(megatron / "tools" / "preprocess_data.py"), "--input", str(corpus), "--output-prefix",
               str(prefix), "--tokenizer-type", "BertWordPieceLowerCase", "--vocab-file", vocab, "--workers",
               str(workers), "--log-interval", "100000000"]
    env = {**os.environ, "NLTK_DATA": str(nltk_data), "PYTHONPATH": str(megatron)}
    if not sentences:
        return timed(command, prefix.with_suffix(".log"), env)
    command.append("--split-sentences")
    split_seconds, split_rss = timed(command, prefix.with_suffix(".split.log"), env)
    seconds, rss = timed(command, prefix.with_suffix(".log"), env)
    return split_seconds + seconds, max(split_rss, rss)


def megatron_punkt(python: str, folder: Path) -> Path:
    """An NLTK_DATA folder whose English Punkt model holds megabio's shipped parameters."""
    target = folder / "tokenizers" / "punkt" / "PY3"  # nltk < 3.9 reads english.pickle from PY3/ on Python 3
    target.mkdir(parents=True)
    subprocess.run([python, "-c", PUNKT_PICKLE, str(SHIPPED_PARAMS), str(target / "english.pickle")], check=True)
    shutil.copy(target / "english.pickle", target.parent / "english.pickle")
    return folder


def identical(a: str, b: str) -> bool:
    return all(filecmp.cmp(f"{a}{ext}", f"{b}{ext}", shallow=False) for ext in (".bin", ".idx"))


def compare_with_megatron(megatron: Path, data: Path, vocab: str, scales: list[int], workers: int,
                          work: Path) -> None:
    python = os.environ.get("MEGATRON_PYTHON", sys.executable)
    nltk_data = megatron_punkt(python, work / "nltk")
    print(f"Megatron-LM {megatron} ({python}) against megabio, {workers} workers, uncased BERT vocabulary\n")
    print("| level | corpus MB | pipeline | seconds | MB/s | sequences | sequences/s | peak RSS MB | "
          "speed vs Megatron-LM | output |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sentences in (False, True):
        level = "sentence" if sentences else "document"
        for scale in scales:
            folder = work / f"{level}-{scale}x"
            folder.mkdir()
            corpus = folder / "corpus.jsonl"
            write_corpus(data, corpus, scale)
            megabytes = corpus.stat().st_size / 1e6
            theirs = megatron_run(megatron, python, corpus, folder / "megatron", vocab, sentences, workers, nltk_data)
            ours = megabio_run(corpus, folder / "megabio", vocab, sentences, workers)
            outputs = {name: str(folder / f"{name}_text_{level}") for name in ("megatron", "megabio")}
            same = "byte-identical" if identical(outputs["megatron"], outputs["megabio"]) else "differs"
            for name, key, (seconds, rss) in (("Megatron-LM", "megatron", theirs), ("megabio", "megabio", ours)):
                count = len(IndexedDataset(outputs[key]))
                print(f"| {level} | {megabytes:.1f} | {name} | {seconds:.1f} | {megabytes / seconds:.2f} | {count:,} | "
                      f"{count / seconds:,.0f} | {rss:.0f} | {theirs[0] / seconds:.2f}x | "
                      f"{same if key == 'megabio' else '-'} |", flush=True)
            shutil.rmtree(folder)


def python_tokenizer_pipeline(corpus: Path, vocab: str, prefix: Path) -> tuple[float, int]:
    """The same read / split / tokenize / write pipeline with transformers' pure-Python tokenizer."""
    cls = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    tokenizer = cls(vocab, do_lower_case=True)
    splitter = SentenceSplitter.load(SHIPPED_PARAMS)
    start, sentences = time.perf_counter(), 0
    with IndexedDatasetWriter(prefix, optimal_dtype(len(tokenizer))) as writer:
        for document in read_documents([corpus]):
            ids = [tokenizer.encode(s, add_special_tokens=False) for s in splitter.split(document.text)]
            ids = [s for s in ids if s]
            if ids:
                writer.add_document(ids)
                sentences += len(ids)
    return time.perf_counter() - start, sentences


def compare_with_python_tokenizer(data: Path, vocab: str, workers: int, work: Path) -> None:
    print("MEGATRON_LM_DIR is not set: comparing with transformers' pure-Python tokenizer in the same pipeline "
          "(sentence level) instead of Megatron-LM\n")
    corpus = work / "corpus.jsonl"
    write_corpus(data, corpus, 1)
    megabytes = corpus.stat().st_size / 1e6
    baseline, sentences = python_tokenizer_pipeline(corpus, vocab, work / "python")
    ours, rss = megabio_run(corpus, work / "megabio", vocab, True, workers)
    print("| pipeline | workers | seconds | MB/s | sentences/s | peak RSS MB | vs pure-Python tokenizer |")
    print("|---|---|---|---|---|---|---|")
    name = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer).__name__
    print(f"| transformers {name} | 1 | {baseline:.1f} | {megabytes / baseline:.2f} | {sentences / baseline:,.0f} | "
          "- | 1.0x |")
    print(f"| megabio preprocess | {workers} | {ours:.1f} | {megabytes / ours:.2f} | {sentences / ours:,.0f} | "
          f"{rss:.0f} | {baseline / ours:.1f}x |", flush=True)


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


def loader_speed(data: Path, vocab: str, workers: int, work: Path) -> None:
    corpus = work / "loader.jsonl"
    write_corpus(data, corpus, 1)
    megabio_run(corpus, work / "loader", vocab, True, workers)
    vocab_tokens = read_vocab(vocab)
    dataset = BertDataset(str(work / "loader_text_sentence"), vocab_tokens, BertSampleSettings(max_seq_length=128))
    consumed = training_samples_per_second(len(vocab_tokens))
    print(f"\n`small` training step consumes {consumed:.1f} samples/s (batch 16, seq 128, fp32)\n"
          "| loader workers | samples/s | x training consumption |\n|---|---|---|")
    for loader_workers in (0, 2):
        rate = loader_samples_per_second(dataset, loader_workers)
        print(f"| {loader_workers} | {rate:,.0f} | {rate / consumed:.0f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="copies of the corpus per run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data_dir)
    vocab = str(data / "vocab" / "bert-base-uncased-vocab.txt")
    cpu = "AMX" if "amx" in Path("/proc/cpuinfo").read_text() else "no AMX"
    print(f"{os.cpu_count()} cores ({cpu})\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if os.environ.get("MEGATRON_LM_DIR"):
            compare_with_megatron(Path(os.environ["MEGATRON_LM_DIR"]).resolve(), data, vocab, args.scales,
                                  args.workers, work)
        else:
            compare_with_python_tokenizer(data, vocab, args.workers, work)
        loader_speed(data, vocab, args.workers, work)


if __name__ == "__main__":
    main()
