"""megabio end to end on an embedded default: build a bio vocabulary, learn a sentence splitter,
preprocess to an indexed dataset, pretrain the tiny model with TP=2 under torchrun (TensorBoard logs, a
checkpoint), export it to Hugging Face and reload it with transformers (same logits), and fine-tune NER
from it, printing the entity F1 and where every output went.

    python -m megabio.demo [--data-dir ../shared/data] [--workdir runs/demo] [--train-iters 100]

The default corpus is `sample_abstracts.txt` (synthetic biomedical sentences written for the demo) and the
NER sample of `ner_sample.py`; --data-dir DIR uses DIR/pretrain's PubMed abstracts and PMC full text
(without benchmark test PMIDs) and DIR/ner/BC5CDR-chem-IOB instead.
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
from megabio.demo.ner_sample import write_sample
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.ner import finetune_ner
from megabio.finetune.recipe import TaskFiles
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
        ner = data / "ner" / "BC5CDR-chem-IOB"
        ner_files = {"train": ner / "train.tsv", "dev": ner / "devel.tsv", "test": ner / "test.tsv"}
    else:
        inputs, exclude, vocab_size = [SAMPLE], None, 400
        ner_files = write_sample(work / "ner-data")

    step(f"1/6 bio vocabulary ({vocab_size} entries, BPE) from {', '.join(map(str, inputs))}")
    build_vocab(inputs, work / "vocab", VocabSettings(vocab_size=vocab_size, model_type="bpe"),
                exclude_ids=exclude, overwrite=True)
    step("2/6 sentence splitter (Punkt) learned from the corpus")
    save_params(train_punkt(d.text for d in read_documents(inputs, exclude_ids=exclude)), work / "punkt.json")
    step("3/6 preprocess to a Megatron-compatible indexed dataset")
    stats = preprocess(inputs, str(work / "data" / "corpus"), PreprocessSettings(
        vocab_file=str(work / "vocab" / "vocab.txt"), split_sentences=True, punkt_file=str(work / "punkt.json"),
        workers=1), exclude_ids=exclude)
    step(f"4/6 pretrain the tiny model, TP={args.nproc}, under torchrun")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "tensorboard", ignore_errors=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "megabio.demo.pretrain_tp", str(work), stats["output_prefix"], str(args.train_iters)]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if result.returncode:
        return result.returncode
    step("5/6 export to Hugging Face (MegatronBert) and reload it with transformers")
    hf_dir = export_and_compare(work)
    step(f"6/6 fine-tune NER from the pretrained checkpoint ({ner_files['train']})")
    shutil.rmtree(work / "ner", ignore_errors=True)
    metrics = finetune_ner(work / "checkpoints", TaskFiles(*(str(ner_files[s]) for s in ("train", "dev", "test"))),
                           work / "ner", FinetuneConfig(epochs=8, lr=2e-3, micro_batch_size=16, seq_length=64,
                                                        log_interval=20, tensorboard_dir=str(work / "ner-tb")))
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    print(f"  vocabulary        {work / 'vocab' / 'vocab.txt'}")
    print(f"  indexed dataset   {stats['output_prefix']}.bin / .idx")
    print(f"  checkpoint        {work / 'checkpoints'}  (TensorBoard: {work / 'tensorboard'})")
    print(f"  transformers copy {hf_dir}")
    print(f"  NER model         {work / 'ner' / 'model'}; test entity F1 {metrics['f1']:.1f} "
          f"(predictions {work / 'ner' / 'predictions.conll'}, TensorBoard {work / 'ner-tb'})")
    return 0


def export_and_compare(work: Path) -> Path:
    """The pretrained checkpoint as a transformers directory, and the largest MLM-logit difference between
    transformers' model loaded from it and megabio's own."""
    import torch

    from megabio.convert import convert, load_pretrained

    hf_dir = work / "hf"
    shutil.rmtree(hf_dir, ignore_errors=True)
    convert("megabio", "hf-megatron-bert", work / "checkpoints", hf_dir)
    try:
        from transformers import MegatronBertForPreTraining
    except ImportError:
        print("transformers is not installed: the export is written but not reloaded")
        return hf_dir
    ours, tokenizer, _ = load_pretrained(work / "checkpoints")
    theirs = MegatronBertForPreTraining.from_pretrained(hf_dir).eval()
    ids = torch.tensor([tokenizer.encode("Warfarin-induced acute kidney injury was attenuated.").ids])
    with torch.no_grad():
        mine = ours.eval()(ids)[1][..., : ours.config.vocab_size]
        reference = theirs(input_ids=ids).prediction_logits
    print(f"{hf_dir}: transformers' MLM logits differ from megabio's by at most {(mine - reference).abs().max():.2e}")
    return hf_dir


if __name__ == "__main__":
    sys.exit(main())
