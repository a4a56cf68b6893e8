"""Fine-tuning benchmarks over several seeds: one JSON line per finished run in a records file, so that runs
made by separate processes (one per core, or on another machine) are summarised together as mean ± sd per
side. A two-epoch fine-tuning score moves by a point or more from seed to seed; one run per side cannot
tell a gap of that size from noise."""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

SIDES = ("transformers", "megabio")


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234], help="one run per seed and side")
    parser.add_argument("--side", choices=("both", *SIDES), default="both",
                        help="run one side only (e.g. each side on its own core, with the same --records)")
    parser.add_argument("--records", type=Path,
                        help="JSON-lines file each finished run is appended to; the summary covers every run in it")


def wants(args: argparse.Namespace, run_name: str) -> bool:
    """Whether `run_name` ("transformers", "megabio ...") belongs to the side(s) asked for."""
    return args.side == "both" or run_name.split()[0] == args.side


def append_record(path: Path | None, record: dict) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def load_records(path: Path | None, this_process: list[dict]) -> list[dict]:
    """Every record in `path` (which already holds this process's), or this process's without a file."""
    if path is None or not path.exists():
        return this_process
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def print_seed_summary(records: list[dict], scores: list[str]) -> None:
    """Per task and run: the seeds, each score's mean ± sd over them and the mean's difference to
    transformers' mean, and the mean seconds per epoch (when the runs used the same number of threads)."""
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
            gap = f"{statistics.fmean(values) - statistics.fmean(r[score] for r in reference):+.2f}" \
                if reference and run != "transformers" else ""
            cells += [_mean_sd(values), gap]
        threads = {r.get("threads") for r in runs}
        seconds = f"{statistics.fmean(s for r in runs for s in r['epoch_seconds']):.0f}" if len(threads) == 1 \
            else "(runs at different thread counts)"
        seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        print(f"| {task} | {run} | {seeds} | " + " | ".join(cells) + f" | {seconds} |")
