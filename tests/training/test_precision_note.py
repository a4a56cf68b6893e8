"""Half precision on a CPU without native arithmetic for it is named in the run's log, with the fix."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.parallel import ParallelState
from megabio.training import engine
from megabio.training.loop import pretrain
from tests.data.test_bert_dataset import random_corpus
from tests.training.test_pretrain import MODEL, TRAIN, VOCAB

CPU = torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["native", "emulated"])
def native(request, monkeypatch):
    """The CPU probe answering as a CPU with (or without) native bf16 and fp16 arithmetic."""
    for probe in ("_is_mkldnn_bf16_supported", "_is_mkldnn_fp16_supported"):
        monkeypatch.setattr(torch.ops.mkldnn, probe, lambda: request.param)
    return request.param


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_note_only_for_emulated_half_precision_on_cpu(native, precision):
    note = engine.slow_precision_note(precision, CPU)
    assert (note is None) == native
    if note is not None:
        assert note.startswith(f"--{precision}:") and "use fp32" in note
    assert engine.slow_precision_note("fp32", CPU) is None
    assert engine.slow_precision_note(precision, torch.device("cuda", 0)) is None


def test_pretraining_logs_the_note(native, tmp_path):
    data = BertDataset(random_corpus(tmp_path / "corpus", documents=20), VOCAB, BertSampleSettings(max_seq_length=32))
    lines: list[str] = []
    pretrain(MODEL, dataclasses.replace(TRAIN, precision="bf16", train_iters=1), data, ParallelState.single(),
             log=lines.append)
    assert any("no native bf16 arithmetic" in line for line in lines) != native
