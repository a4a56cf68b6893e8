"""The ChemProt builder: BLUE's rules on a hand-made corpus, and the BLUE dev and test files rebuilt from
the original BioCreative VI corpus."""

from __future__ import annotations

import collections
from pathlib import Path

from megabio.data.chemprot import Mention, ascii_letter, build_chemprot, mask_pair
from tests.shared_data import shared_data

TITLE = "Aspirin inhibits COX-1 in platelets."
ABSTRACT = "Ibuprofen does not bind PPAR. The kinase MAPK is activated by Ibuprofen."


# Abstracts without mentions, so that Punkt has text to learn sentence boundaries from.
FILLER = "".join(f"{200 + i}\tStudy {i} of the liver.\tThe dose was low. Patients were treated. "
                 f"No effect was seen in group {i}. Blood pressure fell.\n" for i in range(40))


def mention(id_, type_, text, word, nth=0):
    start = -1
    for _ in range(nth + 1):
        start = text.index(word, start + 1)
    return f"{id_}\t{type_}\t{start}\t{start + len(word)}\t{word}"


def write_corpus(root: Path) -> None:
    text = f"{TITLE} {ABSTRACT}"
    entities = [mention("T1", "CHEMICAL", text, "Aspirin"), mention("T2", "GENE-Y", text, "COX-1"),
                mention("T3", "CHEMICAL", text, "Ibuprofen"), mention("T4", "GENE-N", text, "PPAR"),
                mention("T5", "GENE-Y", text, "MAPK"), mention("T6", "CHEMICAL", text, "Ibuprofen", 1)]
    for name in ("training", "development", "test"):  # the annotated abstract in dev only, once
        main = name == "development"
        (root / f"chemprot_{name}_abstracts.tsv").write_text((f"100\t{TITLE}\t{ABSTRACT}\n" if main else "")
                                                             + FILLER)
        (root / f"chemprot_{name}_entities.tsv").write_text("".join(f"100\t{e}\n" for e in entities) if main else "")
        # CPR:2 is not evaluated; T6-T5 carries two labels
        (root / f"chemprot_{name}_gold_standard.tsv").write_text(
            "100\tCPR:4\tArg1:T1\tArg2:T2\n100\tCPR:2\tArg1:T3\tArg2:T4\n100\tCPR:3\tArg1:T6\tArg2:T5\n"
            "100\tCPR:9\tArg1:T6\tArg2:T5\n" if main else "")


def test_blue_rules_on_a_hand_made_corpus(tmp_path):
    write_corpus(tmp_path)
    counts = build_chemprot(tmp_path, tmp_path / "out")
    rows = [line.split("\t") for line in (tmp_path / "out" / "dev.tsv").read_text().splitlines()]
    assert rows == [
        ["100.T1.T2", "@CHEMICAL$ inhibits @GENE$ in platelets.", "CPR:4"],
        ["100.T3.T4", "@CHEMICAL$ does not bind @GENE$.", "false"],
        # the gene comes first: BLUE names the first placeholder @CHEMICAL$ whatever the mention's type
        ["100.T6.T5", "The kinase @CHEMICAL$ is activated by @GENE$.", "CPR:3"],
        ["100.T6.T5", "The kinase @CHEMICAL$ is activated by @GENE$.", "CPR:9"],
    ]
    assert counts["dev"] == {"instances": 4, "CPR:3": 1, "CPR:4": 1, "CPR:9": 1, "false": 1}


def test_overlapping_mentions_are_masked_together():
    sentence = "The NMDA-receptor antagonist."
    chemical, gene = Mention("T1", "CHEMICAL", 4, 8), Mention("T2", "GENE-N", 4, 17)
    assert mask_pair(sentence, 0, chemical, gene) == "The @CHEM-GENE$ antagonist."


def test_ascii_transliteration_keeps_offsets():
    assert "".join(map(ascii_letter, "NF-κB Β-cell café 5\u2009mg")) == "NF-kB B-cell cafe 5 mg"


def test_rebuilds_the_blue_files(tmp_path):
    corpus = shared_data("re", "chemprot_original")
    blue = shared_data("re", "chemprot_blue")
    counts = build_chemprot(corpus, tmp_path / "out")

    def read(path):
        return [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8") if line.strip()]

    ours_dev, blue_dev = read(tmp_path / "out" / "dev.tsv"), read(blue / "dev.tsv")
    assert len(blue_dev) == 11820 and sum(r[2] == "false" for r in blue_dev) == 9404
    # every positive of BLUE's dev set, and the same number per class
    positives = collections.Counter(r[2] for r in blue_dev if r[2] != "false")
    assert {k: v for k, v in counts["dev"].items() if k.startswith("CPR")} == dict(positives)
    assert collections.Counter((r[0], r[2]) for r in ours_dev if r[2] != "false") == \
        collections.Counter((r[0], r[2]) for r in blue_dev if r[2] != "false")
    # instances and negatives within 1% (sentence boundaries differ: see the README)
    assert abs(len(ours_dev) - 11820) / 11820 < 0.01 and abs(counts["dev"]["false"] - 9404) / 9404 < 0.01
    same = {(r[0], r[2]): r[1] for r in blue_dev}
    assert sum(same.get((r[0], r[2])) == r[1] for r in ours_dev) / len(blue_dev) > 0.83
    # the test positives: the same (id, label) pairs
    ours_test = read(tmp_path / "out" / "test.tsv")
    assert collections.Counter((r[0], r[2]) for r in ours_test if r[2] != "false") == \
        collections.Counter((r[0], r[2]) for r in read(blue / "ftest.tsv"))
