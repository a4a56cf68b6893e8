"""Every script in examples/ runs with --dry-run: the resolved configuration, the TP x DP layout and the
memory per rank, exit 0, without starting a job (SLURM's commands are stood in for)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.finetune.helpers import tiny_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("examples")
    vocab = root / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(30522)))
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho node1\n")
    (bin_dir / "srun").write_text("#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\nexec \"$@\"\n")
    for tool in ("scontrol", "srun"):
        (bin_dir / tool).chmod(0o755)
    path = f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "VOCAB_FILE": str(vocab), "DATA_PATH": str(root / "data"),
            "SAVE_DIR": str(root / "save"), "CHECKPOINT_PATH": str(root / "save"),
            "CHECKPOINT": str(tiny_checkpoint(root)), "BIOASQ": str(root / "bioasq"), "PRESET": "345m",
            "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "2", "SLURM_NODEID": "0", "TP": "2"}


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".sh", ".slurm", ".py")))
def test_example_dry_run(script, env):
    command = [sys.executable, str(EXAMPLES / script)] if script.endswith(".py") else ["bash", str(EXAMPLES / script)]
    if script == "pretrain_bert.sh":
        command.append("345m")
    if script.endswith(".py"):
        command += ["--preset", "tiny", "--vocab-file", env["VOCAB_FILE"], "--data-path", env["DATA_PATH"]]
    result = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "layout: world" in result.stdout and "training memory per rank" in result.stdout, result.stdout


def test_bioasq_example_takes_another_years_files(env):
    """Another year's SQuAD-format files replace the 7b folder: the run names them and needs no BIOASQ."""
    own = {k: v for k, v in env.items() if k != "BIOASQ"}
    own.update(TRAIN_FILE="8b-train.json", TEST_FILE="8b-test.json", GOLDEN="8B1_golden.json 8B2_golden.json")
    result = subprocess.run(["bash", "-x", str(EXAMPLES / "finetune_bioasq.sh"), "--dry-run"], env=own,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--train 8b-train.json --dev 8b-train.json --test 8b-test.json" in result.stderr
    assert "--golden 8B1_golden.json 8B2_golden.json" in result.stderr
    del own["TRAIN_FILE"]
    missing = subprocess.run(["bash", str(EXAMPLES / "finetune_bioasq.sh"), "--dry-run"], env=own,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "set BIOASQ" in missing.stderr
