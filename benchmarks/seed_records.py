"""Fine-tuning benchmarks over several seeds: one JSON line per finished run in a records file, so that runs
made by separate processes (one per core, or on another machine) are summarised together as mean ± sd per
side. A two-epoch fine-tuning score moves by a point or more from seed to seed; one run per side cannot
tell a gap of that size from noise."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from megabio.finetune.config import FinetuneConfig

SIDES = ("transformers", "megabio")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every fine-tuning benchmark shares: seeds, sides, the records file, megabio's batching."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234], help="one run per seed and side")
    parser.add_argument("--side", choices=("both", *SIDES), default="both",
                        help="run one side only (e.g. each side on its own core, with the same --records)")
    parser.add_argument("--records", type=Path,
                        help="JSON-lines file each finished run is appended to; the summary covers every run in it")
    parser.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                        help="megabio draws random batches (as transformers does) instead of length-grouped ones")


def megabio_config(args: argparse.Namespace) -> FinetuneConfig:
    """megabio's settings for the benchmark's hyper-parameters and seed."""
    return FinetuneConfig(epochs=args.epochs, lr=args.lr, micro_batch_size=args.batch_size,
                          seq_length=args.seq_length, seed=args.seed, group_by_length=args.group_by_length,
                          log_interval=10**9)


def megabio_run_name(name: str, args: argparse.Namespace) -> str:
    """`name`, marked when megabio runs on random batches (so records of both kinds stay apart)."""
    return name if args.group_by_length else f"{name}, random batches"


def cpu_label() -> str:
    return "AMX" if "amx" in Path("/proc/cpuinfo").read_text() else "no AMX"


def run_over_seeds(args: argparse.Namespace, task: str, runs: list[tuple[str, Callable[[argparse.Namespace], dict]]]
                   ) -> list[dict]:
    """Each run of the side(s) asked for, once per seed (`args` with that seed), as records (its result plus
    task, run, seed, threads and CPU), each appended to --records as soon as it is finished."""
    records = []
    for seed in args.seeds:
        for name, run in runs:
            if args.side != "both" and not name.startswith(args.side):  # e.g. "megabio, random batches"
                continue
            result = run(argparse.Namespace(**{**vars(args), "seed": seed}))
            record = {"task": task, "run": name, "seed": seed, "threads": torch.get_num_threads(),
                      "cpu": cpu_label(), **result}
            records.append(record)
            _append_record(args.records, record)
            print(f"{task} {name}: {record}", file=sys.stderr, flush=True)
    return records


def same_seed_reference(records: list[dict], record: dict) -> dict | None:
    """Transformers' run of `record`'s task and seed, if this process made one."""
    return next((r for r in records if r["task"] == record["task"] and r["seed"] == record["seed"]
                 and r["run"] == "transformers"), None)


def summarise_seeds(path: Path | None, this_process: list[dict], scores: list[str]) -> None:
    """The mean ± sd table over every run in `path` (or this process's), when they span several seeds."""
    records = _load_records(path, this_process)
    if len({r["seed"] for r in records}) > 1:
        _print_seed_summary(records, scores)


def _append_record(path: Path | None, record: dict) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def _load_records(path: Path | None, this_process: list[dict]) -> list[dict]:
    """Every record in `path` (which already holds this process's), or this process's without a file."""
    if path is None or not path.exists():
        return this_process
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _gap(values: list[float], reference: list[float]) -> str:
    """The difference of the means, with its standard error when the two sides have three seeds or more
    between them (a gap within about two standard errors is not told apart from seed noise). The variance is
    pooled over both sides: the two trainings differ only in their random draws
    (tests/finetune/test_same_training_as_transformers.py), and a side with two seeds says little about its
    own spread."""
    gap = f"{statistics.fmean(values) - statistics.fmean(reference):+.2f}"
    n, m = len(values), len(reference)
    if n + m < 3:
        return gap
    squares = sum((v - statistics.fmean(values)) ** 2 for v in values) \
        + sum((v - statistics.fmean(reference)) ** 2 for v in reference)
    error = (squares / (n + m - 2) * (1 / n + 1 / m)) ** 0.5
    return f"{gap} (s.e. {error:.2f})"


def _paired_gap(runs: list[dict], reference: list[dict], score: str) -> str:
    """The mean over seeds both sides ran of the per-seed difference, with its standard error: on the same
    batches (a transformers run on megabio's batches) the data order is shared, so only the models' own
    random draws are left in each difference."""
    theirs = {r["seed"]: r[score] for r in reference}
    differences = [r[score] - theirs[r["seed"]] for r in runs if r["seed"] in theirs]
    if len(differences) < 2:
        return ""
    error = statistics.stdev(differences) / len(differences) ** 0.5
    return f"{statistics.fmean(differences):+.2f} (s.e. {error:.2f}, {len(differences)} seeds)"


def _print_seed_summary(records: list[dict], scores: list[str]) -> None:
    """Per task and run: the seeds, each score's mean ± sd over them and the mean's difference to
    transformers' mean (with its standard error), and the mean seconds per epoch (when the runs used the
    same number of threads); then each other run's difference to any further transformers run (such as
    one on megabio's batches), pooled and paired by seed."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[record["task"], record["run"]].append(record)
    print("\n| task | run | seeds | " + " | ".join(f"{s} mean ± sd | vs transformers" for s in scores)
          + " | s/epoch |")
    print("|---|---|---|" + "---|---|" * len(scores) + "---|")
    for (task, run), runs in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] != "transformers")):
        reference = groups.get((task, "transformers"))
        cells = []
        for score in scores:
            values = [r[score] for r in runs]
            gap = _gap(values, [r[score] for r in reference]) if reference and run != "transformers" else ""
            cells += [_mean_sd(values), gap]
        threads = {r.get("threads") for r in runs}
        seconds = f"{statistics.fmean(s for r in runs for s in r['epoch_seconds']):.0f}" if len(threads) == 1 \
            else "(runs at different thread counts)"
        seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        print(f"| {task} | {run} | {seeds} | " + " | ".join(cells) + f" | {seconds} |")
    # Other transformers runs of a task (e.g. on megabio's batches): each non-transformers run's gap to them.
    for (task, run), runs in sorted(groups.items()):
        if run.startswith("transformers"):
            continue
        for (other_task, other), reference in sorted(groups.items()):
            if other_task == task and other.startswith("transformers") and other != "transformers":
                cells = [cell for s in scores for cell in ("", _gap([r[s] for r in runs], [r[s] for r in reference]))]
                print(f"| {task} | {run} vs {other} | | " + " | ".join(cells) + " | |")
                cells = [cell for s in scores for cell in ("", _paired_gap(runs, reference, s))]
                print(f"| {task} | {run} vs {other}, paired by seed | | " + " | ".join(cells) + " | |")
