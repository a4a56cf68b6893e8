"""The engine's pretraining keeps its numbers: the losses of `pretrain` equal a plain nanoGPT-style loop
written here from torch alone (BertForPretraining, torch's AdamW, the warmup/decay rule by hand)."""

from __future__ import annotations

import pytest
import torch

from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState
from megabio.training.loop import pretrain
from tests.data.test_bert_dataset import random_corpus
from tests.training.test_pretrain import MODEL, TRAIN, VOCAB


def reference_losses(data: BertDataset, steps: int) -> list[float]:
    torch.manual_seed(TRAIN.seed)
    model = BertForPretraining(MODEL)
    groups = [{"params": [p for p in model.parameters() if p.dim() > 1], "weight_decay": TRAIN.weight_decay},
              {"params": [p for p in model.parameters() if p.dim() <= 1], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=TRAIN.lr, eps=TRAIN.adam_eps)
    warmup = int(TRAIN.lr_warmup_fraction * TRAIN.train_iters)
    micro = TRAIN.global_batch_size // TRAIN.micro_batch_size
    losses = []
    for step in range(steps):
        lr = TRAIN.lr * step / warmup if step < warmup else \
            TRAIN.lr * (1 - (step - warmup) / (TRAIN.train_iters - warmup))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        total = 0.0
        for m in range(micro):
            first = step * TRAIN.global_batch_size + m * TRAIN.micro_batch_size
            samples = [data[i] for i in range(first, first + TRAIN.micro_batch_size)]
            batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
            loss = model(**batch)[0]
            (loss / micro).backward()
            total += float(loss.detach()) / micro
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN.clip_grad)
        optimizer.step()
        losses.append(total)
    return losses


def test_pretraining_on_the_engine_equals_a_plain_loop(tmp_path, steps=4):
    data = BertDataset(random_corpus(tmp_path / "corpus", documents=60), VOCAB, BertSampleSettings(max_seq_length=64))
    ours = [r["loss"] for r in pretrain(MODEL, TRAIN, data, ParallelState.single(), log=lambda _: None).history]
    expected = reference_losses(data, steps)
    assert ours[:steps] == pytest.approx(expected, rel=1e-5)
    assert ours[steps - 1] < ours[0]  # and it learns
