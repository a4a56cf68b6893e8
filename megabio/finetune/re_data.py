"""Relation-extraction data: sentence-classification TSV files and their encoding.

A file holds `sentence<TAB>label` or `id<TAB>sentence<TAB>label` rows (a header row is skipped); a file to
predict may hold sentences alone. The two entities are placeholders such as `@CHEMICAL$` and `@GENE$`
(BLUE's masking); with entity markers the first placeholder is wrapped in `<< >>` and the second in
`[[ ]]` (one overlapping `@CHEM-GENE$` in both), and the model classifies on the two opening markers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from megabio.config import ConfigError
from megabio.io.text import numbered_lines

PLACEHOLDER = re.compile(r"@[A-Z][A-Z-]*\$")
MARKERS = (("<<", ">>"), ("[[", "]]"))
_HEADER_LABELS = {"label", "labels", "relation", "predicted"}


@dataclass
class Instance:
    id: str
    sentence: str
    label: str | None
    line: int


def read_instances(path: str | Path, require_labels: bool = True) -> list[Instance]:
    """Rows of a relation TSV; every row must have the first row's column count."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    instances: list[Instance] = []
    columns = None
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if columns is None:
            columns = len(fields)
            allowed = (2, 3) if require_labels else (1, 2, 3)
            if columns not in allowed:
                raise ConfigError(f"{path}:{number}: expected `sentence<TAB>label` or "
                                  f"`id<TAB>sentence<TAB>label`, got {columns} column(s)")
            if columns > 1 and fields[-1].strip().lower() in _HEADER_LABELS:
                continue
        if len(fields) != columns:
            raise ConfigError(f"{path}:{number}: {len(fields)} column(s), the file's first row has {columns}")
        label = fields[-1].strip() if columns > 1 else None
        if columns > 1 and not label:
            raise ConfigError(f"{path}:{number}: empty label")
        sentence = fields[1] if columns == 3 else fields[0]
        instances.append(Instance(fields[0] if columns == 3 else str(number), sentence, label, number))
    if not instances:
        raise ConfigError(f"{path}: no instances")
    return instances


def label_map(train: Sequence[Instance]) -> list[str]:
    return sorted({i.label for i in train if i.label is not None})


def check_known_labels(instances: Sequence[Instance], labels: Sequence[str], path: str | Path) -> None:
    known = set(labels)
    for instance in instances:
        if instance.label is not None and instance.label not in known:
            raise ConfigError(f"{path}:{instance.line}: label {instance.label!r} does not occur in the training "
                              f"data (known: {', '.join(labels)})")


def add_entity_markers(sentence: str, where: str) -> tuple[str, tuple[int, int]]:
    """`sentence` with its first placeholder wrapped in << >> and its second in [[ ]], and the character
    offsets of the two opening markers."""
    found = list(PLACEHOLDER.finditer(sentence))
    if not found:
        raise ConfigError(f"{where}: no entity placeholder (such as @CHEMICAL$ or @GENE$) for the entity markers")
    spans = [(found[0], MARKERS[0]), (found[1], MARKERS[1])] if len(found) > 1 else [(found[0], None)]
    out, last, openings = "", 0, []
    for match, marker in spans:
        out += sentence[last:match.start()]
        if marker is None:  # overlapping mentions masked together: both markers around the one placeholder
            openings += [len(out), len(out) + len(MARKERS[0][0]) + 1]
            out += f"{MARKERS[0][0]} {MARKERS[1][0]} {match.group()} {MARKERS[1][1]} {MARKERS[0][1]}"
        else:
            openings.append(len(out))
            out += f"{marker[0]} {match.group()} {marker[1]}"
        last = match.end()
    return out + sentence[last:], (openings[0], openings[1])


@dataclass
class Encoded:
    input_ids: list[int]
    label: int
    """Class id, or -100 without a label."""
    markers: tuple[int, int] | None
    """Token positions of the two opening markers (entity markers only)."""


def encode(instances: Sequence[Instance], tokenizer, labels: Sequence[str], seq_length: int,
           entity_markers: bool = False, source: str = "") -> list[Encoded]:
    """[CLS] sentence [SEP], cut to seq_length; with markers, the cut keeps both markers where it can."""
    label_id = {label: i for i, label in enumerate(labels)}
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    marked = [add_entity_markers(i.sentence, f"{source}:{i.line}") if entity_markers else (i.sentence, None)
              for i in instances]
    budget = seq_length - 2
    out = []
    encodings = tokenizer.encode_batch([sentence for sentence, _ in marked], add_special_tokens=False)
    for instance, (_, openings), encoding in zip(instances, marked, encodings, strict=True):
        ids, start = encoding.ids, 0
        markers = None if openings is None else tuple(encoding.char_to_token(c) for c in openings)
        if len(ids) > budget and markers is not None:
            start = max(0, min(min(markers), len(ids) - budget))
            start = max(start, max(markers) - budget + 1)
        ids = ids[start: start + budget]
        if markers is not None:
            markers = tuple(min(max(m - start, 0), len(ids) - 1) + 1 for m in markers)
        label = label_id[instance.label] if instance.label is not None else -100
        out.append(Encoded([cls, *ids, sep], label, markers))
    return out
