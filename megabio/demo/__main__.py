"""megabio end to end on an embedded default: build a bio vocabulary, learn a sentence splitter,
preprocess to an indexed dataset, and pretrain the tiny model with TP=2 under torchrun, logging to
TensorBoard and saving a checkpoint.

    python -m megabio.demo [--data-dir ../shared/data] [--workdir runs/demo] [--train-iters 100]

The default corpus is `sample_abstracts.txt` (synthetic biomedical sentences written for the demo);
--data-dir DIR uses DIR/pretrain's PubMed abstracts and PMC full text instead, without benchmark test PMIDs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from megabio.data.preprocess import PreprocessSettings, preprocess
from megabio.io.corpus import read_documents, read_id_list
from megabio.tokenizer.sentences import save_params, train_punkt
from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab

SAMPLE = Path(__file__).with_name("sample_abstracts.txt")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR"))
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--nproc", type=int, default=2, help="processes = tensor-parallel size")
    args = parser.parse_args()
    work = Path(args.workdir)
    started = time.monotonic()
    if args.data_dir:
        data = Path(args.data_dir)
        inputs = [data / "pretrain/CHR-pubmed-abstracts", data / "pretrain/CRAFT-pmc-fulltext"]
        exclude = read_id_list(data / "pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt")
        vocab_size = 8000
    else:
        inputs, exclude, vocab_size = [SAMPLE], None, 400

    step(f"1/4 bio vocabulary ({vocab_size} entries, BPE) from {', '.join(map(str, inputs))}")
    build_vocab(inputs, work / "vocab", VocabSettings(vocab_size=vocab_size, model_type="bpe"),
                exclude_ids=exclude, overwrite=True)
    step("2/4 sentence splitter (Punkt) learned from the corpus")
    save_params(train_punkt(d.text for d in read_documents(inputs, exclude_ids=exclude)), work / "punkt.json")
    step("3/4 preprocess to a Megatron-compatible indexed dataset")
    stats = preprocess(inputs, str(work / "data" / "corpus"), PreprocessSettings(
        vocab_file=str(work / "vocab" / "vocab.txt"), split_sentences=True, punkt_file=str(work / "punkt.json"),
        workers=1), exclude_ids=exclude)
    step(f"4/4 pretrain the tiny model, TP={args.nproc}, under torchrun")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "tensorboard", ignore_errors=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "megabio.demo.pretrain_tp", str(work), stats["output_prefix"], str(args.train_iters)]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if result.returncode:
        return result.returncode
    print(f"\ndone in {time.monotonic() - started:.0f} s: checkpoint in {work / 'checkpoints'}, "
          f"TensorBoard logs in {work / 'tensorboard'} (tensorboard --logdir {work / 'tensorboard'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
