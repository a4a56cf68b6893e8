"""A tiny pretrained checkpoint and a synthetic NER corpus for recipe tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from megabio.checkpoint import write_checkpoint
from megabio.config import ModelConfig
from megabio.model import BertForPretraining

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PLAIN = ["the", "patient", "was", "given", "for", "pain", "and", "fever", "after", "surgery", "dose", "of"]
CHEMICALS = ["aspirin", "ibuprofen", "naloxone", "clonidine"]


def tiny_checkpoint(directory: Path, dropout: float = 0.0) -> Path:
    """A randomly initialised tiny pre-LN encoder saved as a megabio checkpoint with its vocab.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.source.txt"
    vocab.write_text("\n".join(SPECIALS + PLAIN + CHEMICALS + ["acid", "##s"]) + "\n", encoding="utf-8")
    config = ModelConfig.from_preset("tiny", vocab_size=len(vocab.read_text().split()), hidden_dropout=dropout,
                                     attention_dropout=dropout)
    torch.manual_seed(0)
    checkpoint = directory / "pretrained"
    write_checkpoint(checkpoint, BertForPretraining(config).state_dict(), config,
                     extra={"tokenizer": {"lower_case": True}}, vocab_file=vocab)
    return checkpoint


def synthetic_iob(path: Path, sentences: int, seed: int, long_sentence: int = 0) -> Path:
    """IOB sentences where chemicals (optionally followed by `acid`) are entities; one sentence of
    `long_sentence` words when asked, longer than the tests' sequence length."""
    rng = random.Random(seed)
    blocks = []
    for index in range(sentences):
        size = long_sentence if index == 0 and long_sentence else rng.randint(3, 12)
        lines = []
        while len(lines) < size:
            if rng.random() < 0.2:
                lines.append(f"{rng.choice(CHEMICALS)}\tB-Chemical")
                if rng.random() < 0.3:
                    lines.append("acid\tI-Chemical")
            else:
                lines.append(f"{rng.choice(PLAIN)}\tO")
        blocks.append("\n".join(lines) + "\n")
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def synthetic_relations(path: Path, count: int, seed: int, header: bool = False) -> Path:
    """`id<TAB>sentence<TAB>label` rows with @CHEMICAL$ / @GENE$ placeholders: `given` between them means
    CPR:4, `for` means CPR:3, anything else false."""
    rng = random.Random(seed)
    verbs = {"given": "CPR:4", "for": "CPR:3", "and": "false", "after": "false"}
    rows = ["index\tsentence\tlabel"] if header else []
    for index in range(count):
        verb = rng.choice(list(verbs))
        filler = " ".join(rng.choice(PLAIN[:4]) for _ in range(rng.randint(0, 6)))
        rows.append(f"{seed}.{index}\t{filler} @CHEMICAL$ {verb} @GENE$ {filler}\t{verbs[verb]}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def synthetic_squad(path: Path, count: int, seed: int, answers: bool = True) -> Path:
    """SQuAD JSON: contexts of up to ~90 words where `given X for pain` names the answer X; ids end in a
    BioASQ snippet suffix `_001`."""
    rng = random.Random(seed)
    paragraphs = []
    for index in range(count):
        chemical = rng.choice(CHEMICALS)
        before = " ".join(rng.choice(PLAIN) for _ in range(rng.randint(2, 40)))
        after = " ".join(rng.choice(PLAIN) for _ in range(rng.randint(2, 40)))
        context = f"{before} given {chemical} for pain {after}"
        gold = [{"text": chemical, "answer_start": len(before) + 7}] if answers else []
        paragraphs.append({"context": context, "qas": [{"id": f"q{seed}x{index}_001",
                                                         "question": "what was given for pain", "answers": gold}]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path
