"""A small annotated NER sample written for the demo: sentences in the style of the demo's abstracts with
their chemicals tagged B-Chemical / I-Chemical (IOB, one token per line), generated from templates with a
fixed seed so every run sees the same files."""

from __future__ import annotations

import random
from pathlib import Path

CHEMICALS = ["warfarin", "valproate", "levodopa", "methotrexate", "amiodarone", "paclitaxel", "cisplatin",
             "lithium carbonate", "N-acetylcysteine", "haloperidol", "carbamazepine", "doxorubicin",
             "gentamicin", "nitric oxide", "retinoic acid", "vitamin D", "tacrolimus", "propofol"]
TEMPLATES = [
    "{c} - induced acute kidney injury was attenuated by co-treatment with {d} .",
    "Plasma levels of {c} correlated with heart rate .",
    "Peripheral neuropathy developed within 57 days of starting {c} and resolved after withdrawal .",
    "In a randomized trial of 37 elderly patients , {c} did not prevent agranulocytosis .",
    "Activation of HMGB1 by {c} may explain the observed seizures .",
    "Patients treated with {c} and {d} showed no change in blood pressure .",
    "The toxicity of {c} was reduced in mice lacking the transporter .",
]


def _tagged(name: str) -> list[tuple[str, str]]:
    words = name.split()
    return [(w, "B-Chemical" if i == 0 else "I-Chemical") for i, w in enumerate(words)]


def sentences(count: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        template = rng.choice(TEMPLATES)
        first, second = rng.sample(CHEMICALS, 2)
        tokens: list[tuple[str, str]] = []
        for word in template.split():
            if word in ("{c}", "{d}"):
                tokens += _tagged(first if word == "{c}" else second)
            else:
                tokens.append((word, "O"))
        out.append(tokens)
    return out


def write_sample(directory: Path) -> dict[str, Path]:
    """train.tsv (300 sentences), dev.tsv and test.tsv (80 each) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, count, seed in (("train", 300, 1), ("dev", 80, 2), ("test", 80, 3)):
        path = directory / f"{split}.tsv"
        path.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sentences(count, seed)),
                        encoding="utf-8")
        files[split] = path
    return files
