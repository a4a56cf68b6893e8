"""How close `megabio data chemprot` comes to BLUE's ChemProt files: instance and label counts, (id, label)
pairs in one but not the other, identical sentence texts, and why the differing texts differ (a sentence
boundary: one text contains the other; else the text itself).

    python benchmarks/compare_chemprot.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

from megabio.data.chemprot import build_chemprot


def read(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8") if line.strip()]


def compare(name: str, ours: list[list[str]], blue: list[list[str]]) -> None:
    ours_pairs = collections.Counter((r[0], r[2]) for r in ours)
    blue_pairs = collections.Counter((r[0], r[2]) for r in blue)
    ours_text = {(r[0], r[2]): r[1] for r in ours}
    blue_text = {(r[0], r[2]): r[1] for r in blue}
    common = set(ours_text) & set(blue_text)
    same = sum(ours_text[k] == blue_text[k] for k in common)
    causes = collections.Counter("sentence boundary" if ours_text[k] in blue_text[k] or blue_text[k] in ours_text[k]
                                 else "text" for k in common if ours_text[k] != blue_text[k])
    print(f"{name}: megabio {len(ours)} rows ({sum(r[2] == 'false' for r in ours)} false), BLUE {len(blue)} "
          f"({sum(r[2] == 'false' for r in blue)} false); (id, label) only in megabio "
          f"{sum((ours_pairs - blue_pairs).values())}, only in BLUE {sum((blue_pairs - ours_pairs).values())}; "
          f"identical text {same} of {len(blue)} BLUE rows ({100 * same / len(blue):.1f}%), of {len(common)} "
          f"common ({100 * same / len(common):.1f}%); differing texts by cause: {dict(causes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    re_dir = Path(args.data_dir) / "re"
    with tempfile.TemporaryDirectory() as tmp:
        build_chemprot(re_dir / "chemprot_original", Path(tmp) / "out")
        out = Path(tmp) / "out"
        compare("dev", read(out / "dev.tsv"), read(re_dir / "chemprot_blue" / "dev.tsv"))
        for split, blue in (("test", "ftest.tsv"), ("train", "ndtrain.tsv")):  # BLUE's positives only
            compare(f"{split} positives", [r for r in read(out / f"{split}.tsv") if r[2] != "false"],
                    read(re_dir / "chemprot_blue" / blue))


if __name__ == "__main__":
    main()
