"""The sentence-level ChemProt set of BLUE / BioBERT, built from the original BioCreative VI corpus.

Each abstract (title, a space, abstract) is split into sentences (Punkt, learned from the corpus's own
text, then BLUE's merge rule: a sentence continues unless the previous one ends in . ? or ! other than
`i.v.` and the next starts upper-case). Every chemical-gene pair inside one sentence is an instance,
labelled with its gold relations of the evaluated groups (CPR:3, 4, 5, 6, 9; one row per label) or
`false`. The two mentions are replaced as BLUE replaced them: the one that comes first in the sentence by
`@CHEMICAL$` and the other by `@GENE$` (BLUE keys the placeholder on position, not on the mention's type),
overlapping mentions together by `@CHEM-GENE$`. Rows: `pmid.Tchem.Tgene<TAB>sentence<TAB>label`.
"""

from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from megabio.config import ConfigError
from megabio.io.atomic import atomic_directory
from megabio.io.text import numbered_lines
from megabio.tokenizer.sentences import SentenceSplitter, train_punkt

SPLITS = {"train": "training", "dev": "development", "test": "test"}
EVALUATED = ("CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")
GENE_TYPES = ("GENE-N", "GENE-Y")


@dataclass(frozen=True)
class Mention:
    id: str
    type: str
    start: int
    end: int


def _split_files(corpus: Path, split: str) -> dict[str, Path]:
    """The abstracts, entities and gold-standard files of a split (`_gs` suffixed in the test release)."""
    name = SPLITS[split]
    files = {}
    for kind in ("abstracts", "entities", "gold_standard"):
        candidates = [corpus / f"chemprot_{name}_{kind}.tsv", corpus / f"chemprot_{name}_{kind}_gs.tsv",
                      corpus / f"chemprot_{name}" / f"chemprot_{name}_{kind}.tsv",
                      corpus / f"chemprot_{name}_gs" / f"chemprot_{name}_{kind}_gs.tsv"]
        if kind == "gold_standard":
            candidates = [corpus / f"chemprot_{name}_gold_standard.tsv",
                          corpus / f"chemprot_{name}" / f"chemprot_{name}_gold_standard.tsv",
                          corpus / f"chemprot_{name}_gs" / f"chemprot_{name}_gold_standard.tsv"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"{corpus}: no {candidates[0].name} (or its _gs / sub-folder variants) for the "
                              f"{split} split: is this the BioCreative VI ChemProt corpus?")
        files[kind] = found
    return files


def _rows(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    rows = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < columns:
            raise ConfigError(f"{path}:{number}: expected {columns} tab-separated fields, got {len(fields)}")
        rows.append((number, fields))
    return rows


def ascii_letter(char: str) -> str:
    """One ASCII character for `char`: itself when ASCII, a Greek letter's Latin initial (κ -> k, Β -> B), an
    accented letter's base (é -> e), else a space. One for one, so the corpus's offsets stay valid."""
    if char.isascii():
        return char
    name = unicodedata.name(char, "")
    if name.startswith("GREEK") and "LETTER" in name:
        initial = name.split("LETTER ")[1][0]
        return initial.lower() if "SMALL" in name else initial
    base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    return base if len(base) == 1 else " "


def read_abstracts(path: Path, ascii_only: bool = True) -> dict[str, str]:
    """pmid -> title, a space, abstract (transliterated to ASCII as BLUE's text is, unless `ascii_only` is off)."""
    texts = {fields[0]: f"{fields[1]} {fields[2]}" for _, fields in _rows(path, 3)}
    if ascii_only:
        texts = {pmid: "".join(map(ascii_letter, text)) for pmid, text in texts.items()}
    return texts


def read_mentions(path: Path) -> dict[str, list[Mention]]:
    mentions: dict[str, list[Mention]] = defaultdict(list)
    for number, fields in _rows(path, 5):
        try:
            mentions[fields[0]].append(Mention(fields[1], fields[2], int(fields[3]), int(fields[4])))
        except ValueError:
            raise ConfigError(f"{path}:{number}: offsets {fields[3]!r}, {fields[4]!r} are not integers") from None
    return mentions


def read_relations(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(pmid, chemical id, gene id) -> its evaluated labels, in file order."""
    relations: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for _, fields in _rows(path, 4):
        if fields[1] in EVALUATED:
            arg1, arg2 = (f.split(":", 1)[-1] for f in fields[2:4])
            relations[(fields[0], arg1, arg2)].append(fields[1])
    return relations


def merge_sentences(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """BLUE's rule: a sentence ends only after . ? or ! (not `i.v.`) followed by an upper-case start."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged:
            previous = text[merged[-1][0]:merged[-1][1]]
            if not (previous[-1] in ".?!" and previous[-4:] != "i.v." and text[start].isupper()):
                merged[-1] = (merged[-1][0], end)
                continue
        merged.append((start, end))
    return merged


def mask_pair(sentence: str, offset: int, chemical: Mention, gene: Mention) -> str:
    """The sentence with the pair's mentions replaced as BLUE replaced them (see the module docstring)."""
    first, second = sorted([(chemical.start - offset, chemical.end - offset), (gene.start - offset, gene.end - offset)])
    if second[0] <= first[1]:  # overlapping (or touching) mentions
        return sentence[:first[0]] + "@CHEM-GENE$" + sentence[max(first[1], second[1]):]
    return sentence[:first[0]] + "@CHEMICAL$" + sentence[first[1]:second[0]] + "@GENE$" + sentence[second[1]:]


def build_split(files: dict[str, Path], splitter: SentenceSplitter) -> list[tuple[str, str, str]]:
    """(id, masked sentence, label) rows of one split."""
    abstracts = read_abstracts(files["abstracts"])
    mentions = read_mentions(files["entities"])
    relations = read_relations(files["gold_standard"])
    rows = []
    for pmid, text in abstracts.items():
        for start, end in merge_sentences(text, splitter.spans(text)):
            inside = [m for m in mentions.get(pmid, []) if start <= m.start and m.end <= end]
            chemicals = [m for m in inside if m.type == "CHEMICAL"]
            genes = [m for kind in GENE_TYPES for m in inside if m.type == kind]
            for chemical in chemicals:
                for gene in genes:
                    masked = mask_pair(text[start:end], start, chemical, gene)
                    for label in relations.get((pmid, chemical.id, gene.id), ["false"]):
                        rows.append((f"{pmid}.{chemical.id}.{gene.id}", masked, label))
    return rows


def build_chemprot(corpus: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False) -> dict[str, dict]:
    """Write `train.tsv`, `dev.tsv` and `test.tsv` into `output`; returns label counts per split."""
    corpus = Path(corpus)
    files = {split: _split_files(corpus, split) for split in SPLITS}
    texts = [t for split in files.values() for t in read_abstracts(split["abstracts"]).values()]
    splitter = SentenceSplitter(train_punkt(texts))
    counts = {}
    with atomic_directory(output, replace=overwrite) as tmp:
        for split, split_files in files.items():
            rows = build_split(split_files, splitter)
            (tmp / f"{split}.tsv").write_text("".join(f"{i}\t{s}\t{label}\n" for i, s, label in rows),
                                              encoding="utf-8")
            labels: dict[str, int] = defaultdict(int)
            for _, _, label in rows:
                labels[label] += 1
            counts[split] = {"instances": len(rows), **dict(sorted(labels.items()))}
    return counts
