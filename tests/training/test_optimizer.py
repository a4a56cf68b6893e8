"""Optimizer choice per device (torch's fused AdamW, apex FusedAdam on GPU when installed) and the
name-keyed optimizer state round trip."""

from __future__ import annotations

import copy
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
    assert adamw_class(torch.device("cpu")) == (torch.optim.AdamW, {"fused": True})
    assert adamw_class(torch.device("meta")) == (torch.optim.AdamW, {})
    monkeypatch.setitem(sys.modules, "apex", None)  # apex absent
    assert adamw_class(torch.device("cuda", 0)) == (torch.optim.AdamW, {"fused": True})
    fused_adam = type("FusedAdam", (), {})
    monkeypatch.setitem(sys.modules, "apex", types.ModuleType("apex"))
    monkeypatch.setitem(sys.modules, "apex.optimizers", types.SimpleNamespace(FusedAdam=fused_adam))
    assert adamw_class(torch.device("cuda", 0)) == (fused_adam, {"adam_w_mode": True})


def test_fused_cpu_adamw_steps_like_the_default_implementation():
    torch.manual_seed(0)
    model = BertForPretraining(ModelConfig.from_preset("tiny", vocab_size=300))
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    fused = build_optimizer(model, TrainConfig(weight_decay=0.1), ParallelState.single())
    assert fused.defaults["fused"]
    groups = [{"params": [p for p in reference.parameters() if p.dim() > 1], "weight_decay": 0.1},
              {"params": [p for p in reference.parameters() if p.dim() <= 1], "weight_decay": 0.0}]
    plain = torch.optim.AdamW(groups, lr=fused.defaults["lr"], betas=fused.defaults["betas"],
                              eps=fused.defaults["eps"], foreach=False)
    for _ in range(3):
        for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
            ours.grad = torch.randn_like(ours)
            theirs.grad = ours.grad.clone()
        fused.step()
        plain.step()
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    moved = [(ours - start).abs().max().item() for ours, start in
             zip(model.parameters(), initial.parameters(), strict=True)]
    assert min(moved) > 1e-4  # every parameter took real steps, so the comparison above means something


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
