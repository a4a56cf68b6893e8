"""Text inputs read with errors that name the file (and line): line by line, where bytes that are not UTF-8
or a file (plain or gzip) that cannot be read are named, and whole JSON files."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from megabio.config import ConfigError


def numbered_lines(path: str | os.PathLike, error: type[ValueError] = ConfigError) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 file (`.gz`: gzip); a line that is not UTF-8 or an
    unreadable file raises `error` naming the file and line. Lines are decoded one at a time so the error
    points at the right one."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as decoding:
                    raise error(f"{path}:{number}: not valid UTF-8 ({decoding.reason} at column "
                                f"{decoding.start + 1})") from None
    except (OSError, EOFError) as reading:  # unreadable file or broken gzip
        raise error(f"{path}: cannot read ({reading})") from None


def read_json(path: str | os.PathLike, what: str, error: type[ValueError] = ConfigError) -> Any:
    """The JSON value of a UTF-8 file; an unreadable file or broken JSON raises `error` naming the file as
    "not a `what` JSON file"."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as reading:
        raise error(f"{path}: not a {what} JSON file ({reading})") from None
