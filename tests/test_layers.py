"""megabio's layers run one way: each subpackage imports only the layers below it (the table in the
README), read off every import statement of the package, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "megabio"

_BELOW_MODEL = {"config", "io", "kernels", "parallel"}
_BELOW_CONVERT = _BELOW_MODEL | {"tokenizer", "model", "checkpoint"}
_BELOW_TRAINING = _BELOW_CONVERT | {"data", "convert", "cpu_allocator", "sizing"}
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "io": {"config"},
    "tokenizer": {"config", "io"},
    "data": {"config", "io", "tokenizer"},
    "kernels": {"config"},
    "parallel": {"config", "kernels"},
    "cpu_allocator": set(),
    "sizing": {"config"},
    "model": _BELOW_MODEL,
    "checkpoint": _BELOW_MODEL | {"model"},
    "convert": _BELOW_CONVERT,
    "training": _BELOW_TRAINING,
    "finetune": _BELOW_TRAINING | {"training"},
    "demo": _BELOW_TRAINING | {"training", "finetune"},
    "cli": _BELOW_TRAINING | {"training", "finetune"},
    "__init__": {"convert"},
    "__main__": {"cli"},
}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "megabio" and len(parts) > 1 and not parts[1].startswith("_"):
                layers.add(parts[1])
    return layers


def test_every_import_goes_down_a_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        assert layer in ALLOWED, f"{path}: layer {layer!r} is missing from the table"
        for target in imported_layers(path) - {layer} - ALLOWED[layer]:
            wrong.append(f"{path.relative_to(PACKAGE.parent)} ({layer}) imports megabio.{target}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from megabio.training.loop import pretrain\n")
    assert imported_layers(probe) == {"training"}
