"""Optimizer choice per device (torch AdamW on CPU, fused on GPU, apex FusedAdam when installed) and the
name-keyed optimizer state round trip."""

from __future__ import annotations

import sys
import types

import torch

from megabio.config import ModelConfig
from megabio.model import BertForPretraining
from megabio.parallel import ParallelState
from megabio.training.config import TrainConfig
from megabio.training.optimizer import (
    adamw_class,
    build_optimizer,
    load_optimizer_state_by_name,
    optimizer_state_by_name,
)


def test_adamw_implementation_per_device(monkeypatch):
    assert adamw_class(torch.device("cpu")) == (torch.optim.AdamW, {})
    monkeypatch.setitem(sys.modules, "apex", None)  # apex absent
    assert adamw_class(torch.device("cuda", 0)) == (torch.optim.AdamW, {"fused": True})
    fused_adam = type("FusedAdam", (), {})
    monkeypatch.setitem(sys.modules, "apex", types.ModuleType("apex"))
    monkeypatch.setitem(sys.modules, "apex.optimizers", types.SimpleNamespace(FusedAdam=fused_adam))
    assert adamw_class(torch.device("cuda", 0)) == (fused_adam, {"adam_w_mode": True})


def test_state_by_name_round_trips_into_a_fresh_optimizer():
    config = ModelConfig.from_preset("tiny", vocab_size=300)
    torch.manual_seed(0)
    model = BertForPretraining(config)
    optimizer = build_optimizer(model, TrainConfig(), ParallelState.single())
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    optimizer.step()
    saved = optimizer_state_by_name(model, optimizer)
    assert set(saved["state"]) == {name for name, _ in model.named_parameters()}
    fresh = build_optimizer(model, TrainConfig(), ParallelState.single())
    load_optimizer_state_by_name(model, fresh, saved, "test")
    for param in model.parameters():
        for key, value in optimizer.state[param].items():
            assert torch.equal(fresh.state[param][key], value), key
    assert [g["weight_decay"] for g in fresh.param_groups] == [0.01, 0.0]
