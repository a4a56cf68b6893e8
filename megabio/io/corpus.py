"""Read documents from the files users have: plain text, JSON lines, PubTator, gzip of any of these, and
directories of such files. Bad bytes are reported with the file and line.

Plain text: every non-empty line is a document (a blank line separates paragraphs, which is the same
thing for this reader). JSON lines: the `json_key` field of each object. PubTator: the title (`|t|`) and
abstract (`|a|`) of each PMID, annotation lines skipped. PubMed baseline XML (`pubmed*.xml[.gz]`): the
title and abstract of each PubmedArticle, streamed.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from megabio.io.text import numbered_lines

_PUBTATOR_TEXT = re.compile(r"^(\d+)\|([ta])\|(.*)$")
_TEXT_SUFFIXES = {"", ".txt", ".text", ".jsonl", ".json", ".pubtator", ".xml", ".gz"}


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    """`file:line` of the document's first line."""
    doc_id: str | None = None
    """The PMID for PubTator input."""


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus the text files found (recursively, sorted) under named directories."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in _TEXT_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or directory")
    return files


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _format(path: Path) -> str:
    name = path.name[:-3] if path.suffix == ".gz" else path.name
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".xml"):
        return "pubmed_xml"
    for _, line in numbered_lines(path, CorpusError):
        if line.strip():
            return "pubtator" if _PUBTATOR_TEXT.match(line) else "text"
    return "text"


def read_documents(paths: Iterable[str | os.PathLike], json_key: str = "text",
                   exclude_ids: set[str] | None = None) -> Iterator[Document]:
    """Every document of every file, in order. `exclude_ids` drops PubTator documents by PMID (and JSON
    lines whose `id` or `pmid` field is listed)."""
    exclude_ids = exclude_ids or set()
    for path in expand_paths(paths):
        kind = _format(path)
        if kind == "jsonl":
            yield from _read_jsonl(path, json_key, exclude_ids)
        elif kind == "pubtator":
            yield from _read_pubtator(path, exclude_ids)
        elif kind == "pubmed_xml":
            yield from _read_pubmed_xml(path, exclude_ids)
        else:
            for line_no, line in numbered_lines(path, CorpusError):
                if line.strip():
                    yield Document(line.strip(), f"{path}:{line_no}")


def _read_jsonl(path: Path, json_key: str, exclude_ids: set[str]) -> Iterator[Document]:
    for line_no, line in numbered_lines(path, CorpusError):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{path}:{line_no}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or json_key not in record:
            raise CorpusError(f"{path}:{line_no}: no {json_key!r} field (choose the field with --json-keys)")
        doc_id = record.get("pmid", record.get("id"))
        if doc_id is not None and str(doc_id) in exclude_ids:
            continue
        if str(record[json_key]).strip():
            yield Document(str(record[json_key]).strip(), f"{path}:{line_no}",
                           None if doc_id is None else str(doc_id))


def _read_pubtator(path: Path, exclude_ids: set[str]) -> Iterator[Document]:
    current: str | None = None
    parts: list[str] = []
    start = ""

    def flush() -> Iterator[Document]:
        if current is not None and current not in exclude_ids and any(parts):
            yield Document(" ".join(p for p in parts if p), start, current)

    for line_no, line in numbered_lines(path, CorpusError):
        match = _PUBTATOR_TEXT.match(line)
        if not match:
            continue  # annotation, relation or blank line
        pmid, _, text = match.groups()
        if pmid != current:
            yield from flush()
            current, parts, start = pmid, [], f"{path}:{line_no}"
        parts.append(text.strip())
    yield from flush()


def _read_pubmed_xml(path: Path, exclude_ids: set[str]) -> Iterator[Document]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for _, element in ElementTree.iterparse(handle, events=("end",)):
                if element.tag != "PubmedArticle":
                    continue
                pmid = element.findtext(".//MedlineCitation/PMID") or ""
                title = "".join(element.find(".//ArticleTitle").itertext()) if element.find(".//ArticleTitle") \
                    is not None else ""
                abstract = " ".join("".join(part.itertext()).strip() for part in element.iter("AbstractText"))
                text = " ".join(t.strip() for t in (title, abstract) if t.strip())
                if text and pmid not in exclude_ids:
                    yield Document(text, f"{path}:PMID {pmid}", pmid or None)
                element.clear()  # keep memory flat over a whole baseline file
    except ElementTree.ParseError as error:
        raise CorpusError(f"{path}:{error.position[0]}: malformed XML ({error})") from None


def read_id_list(path: str | os.PathLike) -> set[str]:
    """The first whitespace-separated field of every non-empty line (e.g. a PMID list)."""
    return {line.split()[0] for _, line in numbered_lines(path, CorpusError) if line.strip()}
