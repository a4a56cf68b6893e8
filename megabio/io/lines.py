"""Text files read line by line, with errors that name the file and line: bytes that are not UTF-8, or a
file (plain or gzip) that cannot be read."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

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
