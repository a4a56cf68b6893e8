"""The README's commands stay true: every `megabio` command line in a fenced bash block names a command
that exists and only flags its `--help` lists, and the blocks marked `quick` run (exit 0)."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from megabio.cli import build_parser
from megabio.cli.pretrain import main as pretrain_main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```bash( quick)?\n(.*?)^```", README, re.M | re.S)


def command_lines(block: str) -> list[list[str]]:
    """The megabio argument lists of a block (continuations joined, comments and env prefixes dropped)."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" # ")[0].strip()
        words = shlex.split(line, comments=True) if line else []
        if ("megabio" in words and words[0] in ("megabio", "torchrun")) or words[:2] == ["-m", "megabio"]:
            lines.append(words[words.index("megabio") + 1:])
    return lines


def help_text(words: list[str]) -> tuple[list[str], str]:
    """(the sub-command path, its --help text)."""
    path = [w for w in words[:2] if not w.startswith("-")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        if path[0] == "pretrain":
            pretrain_main(["--help"])
        else:
            build_parser().parse_args([*path, "--help"])
    return path, out.getvalue()


ALL_LINES = [words for _, block in BLOCKS for words in command_lines(block)]


def test_the_readme_has_commands():
    assert len(ALL_LINES) > 30


@pytest.mark.parametrize("words", ALL_LINES, ids=[" ".join(w[:2]) for w in ALL_LINES])
def test_every_flag_exists(words):
    path, text = help_text(words)
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    missing = sorted(f for f in flags if f not in text and f != "--help")
    assert not missing, f"`megabio {' '.join(path)}` has no {missing}"


QUICK = [words for quick, block in BLOCKS if quick for words in command_lines(block)]


@pytest.mark.parametrize("words", QUICK, ids=[" ".join(w) for w in QUICK])
def test_quick_commands_run(words):
    result = subprocess.run([sys.executable, "-m", "megabio", *words], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


NAMES = sorted(set(re.findall(r"`(megabio(?:\.\w+)+)`", README)))


def _resolves(name: str) -> bool:
    """Whether a dotted name is a module of the package or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_module_the_readme_names_exists():
    assert len(NAMES) > 5
    missing = [name for name in NAMES if not _resolves(name)]
    assert not missing, f"the README names {missing}, which the package does not have"
