"""`make demo`'s job end to end on its embedded default (fewer pretraining steps): every step's output is
there and the NER model was scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_runs_the_whole_pipeline(tmp_path):
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "DATA_DIR"}
    result = subprocess.run([sys.executable, "-m", "megabio.demo", "--workdir", str(work), "--train-iters", "40"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "transformers' MLM logits differ from megabio's by at most" in result.stdout
    for path in ("vocab/vocab.txt", "checkpoints/latest_checkpointed_iteration.txt", "hf/model.safetensors",
                 "ner/model/vocab.txt", "ner/predictions.conll"):
        assert (work / path).exists(), path
    metrics = json.loads((work / "ner" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and 0.0 <= metrics["f1"] <= 100.0
