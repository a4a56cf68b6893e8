"""Pretraining throughput and memory: `megabio pretrain` of the tiny and small presets, launched as users
launch it (torchrun for DP=2), without and with activation recomputation, and with ZeRO-1
(`--use-distributed-optimizer`) at DP=2 against the replicated optimizer at DP=2.

Prints tokens/s (the steady-state window after step 1) and peak memory per rank (resident set size on CPU,
allocated memory on GPU, as the training log reports it), and the memory each option saves. The data is a
synthetic corpus over a BERT-sized (30,522-token) vocabulary, so the embedding and optimizer sizes are real.

    python benchmarks/bench_train.py [--presets tiny small] [--iters 10] [--micro-batch-size 8] [--seq 128]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from megabio.data.indexed_dataset import IndexedDatasetWriter

VOCAB_SIZE = 30522
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LOG_LINE = re.compile(r"iteration +(\d+) .*tokens/s ([\d,]+) .*peak memory/rank ([\d,]+) MiB")


def write_corpus(directory: Path, documents: int = 400, seed: int = 0) -> tuple[Path, Path]:
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(VOCAB_SIZE - len(SPECIALS))]) + "\n",
                     encoding="utf-8")
    rng = np.random.default_rng(seed)
    prefix = directory / "corpus"
    with IndexedDatasetWriter(prefix) as writer:
        for _ in range(documents):
            writer.add_document([rng.integers(len(SPECIALS), VOCAB_SIZE, size=rng.integers(12, 40))
                                 for _ in range(rng.integers(4, 16))])
    return vocab, prefix


def run(preset: str, dp: int, recompute: bool, zero: bool, args: argparse.Namespace, vocab: Path,
        prefix: Path) -> dict[str, float]:
    flags = ["--preset", preset, "--vocab-file", str(vocab), "--data-path", str(prefix), "--seq-length",
             str(args.seq), "--micro-batch-size", str(args.micro_batch_size), "--global-batch-size",
             str(args.micro_batch_size * dp), "--train-iters", str(args.iters), "--log-interval", str(args.iters)]
    flags += ["--recompute-activations"] * recompute + ["--use-distributed-optimizer"] * zero
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(dp)] \
        if dp > 1 else [sys.executable]
    threads = max(1, (os.cpu_count() or 1) // dp)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("WORLD_SIZE", None)
    result = subprocess.run([*launcher, "-m", "megabio", "pretrain", *flags], capture_output=True, text=True,
                            env=env, check=False)
    steady = [m for m in LOG_LINE.finditer(result.stdout) if int(m[1]) == args.iters]
    if result.returncode or not steady:
        raise SystemExit(f"{preset} DP={dp} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return {"tokens_per_second": float(steady[0][2].replace(",", "")),
            "peak_mib": float(steady[0][3].replace(",", ""))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    variants = [("DP=1", 1, False, False), ("DP=1 + recompute", 1, True, False),
                ("DP=2", 2, False, False), ("DP=2 + ZeRO-1", 2, False, True)]
    print(f"micro-batch {args.micro_batch_size} x seq {args.seq}, {args.iters} iterations, fp32, "
          f"{os.cpu_count()} CPU threads shared by the ranks\n")
    print("| preset | run | tokens/s | peak memory/rank (MiB) | saved vs. without |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        vocab, prefix = write_corpus(Path(tmp))
        for preset in args.presets:
            results = {}
            for name, dp, recompute, zero in variants:
                results[name] = measured = run(preset, dp, recompute, zero, args, vocab, prefix)
                baseline = {"DP=1 + recompute": "DP=1", "DP=2 + ZeRO-1": "DP=2"}.get(name)
                saved = f"{results[baseline]['peak_mib'] - measured['peak_mib']:,.0f} MiB" if baseline else ""
                print(f"| {preset} | {name} | {measured['tokens_per_second']:,.0f} | "
                      f"{measured['peak_mib']:,.0f} | {saved} |", flush=True)


if __name__ == "__main__":
    main()
