"""The train loop: TP x DP equals one process, exact resume, crash-safe checkpoints, mixed precision with
overflow skipping, the loss falling on real PubMed text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from megabio.checkpoint import training as checkpointing
from megabio.config import ConfigError, ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.parallel import ParallelState, initialize
from megabio.training.config import TrainConfig
from megabio.training.loop import StopFlag, pretrain
from tests.data.test_bert_dataset import VOCAB, random_corpus
from tests.distributed import run_distributed

MODEL = ModelConfig.from_preset("tiny", vocab_size=len(VOCAB), hidden_dropout=0.0, attention_dropout=0.0)
TRAIN = TrainConfig(micro_batch_size=2, global_batch_size=8, seq_length=64, train_iters=10, lr=1e-3,
                    lr_warmup_fraction=0.2, log_interval=100)


def dataset(prefix) -> BertDataset:
    return BertDataset(prefix, VOCAB, BertSampleSettings(max_seq_length=64))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return random_corpus(tmp_path_factory.mktemp("train") / "corpus", documents=120)


def check_tp_dp_equals_single(prefix: str) -> None:
    data = dataset(prefix)
    single = pretrain(MODEL, TRAIN, data, ParallelState.single(), log=lambda _: None)
    state = initialize(tensor_model_parallel_size=2)
    parallel = pretrain(MODEL, TRAIN, data, state, log=lambda _: None)
    for ours, reference in zip(parallel.history, single.history, strict=True):
        assert abs(ours["loss"] - reference["loss"]) <= 1e-5 * abs(reference["loss"]), (ours, reference)
        assert abs(ours["grad_norm"] - reference["grad_norm"]) <= 1e-4 * reference["grad_norm"]


def test_tp2_dp2_trains_like_one_process(corpus):
    run_distributed(check_tp_dp_equals_single, 4, str(corpus))


def test_resume_gives_the_losses_of_an_uninterrupted_run(corpus, tmp_path):
    model = MODEL.replace(hidden_dropout=0.1, attention_dropout=0.1)  # RNG state must be restored too
    data = dataset(corpus)
    full = pretrain(model, TRAIN, data, ParallelState.single(), log=lambda _: None)
    stop = StopFlag()

    def stop_at_5(_, iteration):
        stop.requested = iteration == 4

    first = pretrain(model, dataclasses.replace(TRAIN, save=str(tmp_path / "ckpt")), data, ParallelState.single(),
                     log=lambda _: None, stop=stop, after_backward=stop_at_5)
    assert first.stopped_early and first.iteration == 5
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "5"
    second = pretrain(model, dataclasses.replace(TRAIN, load=str(tmp_path / "ckpt")), data, ParallelState.single(),
                      log=lambda _: None)
    assert [r["loss"] for r in second.history] == [r["loss"] for r in full.history[5:]]


def test_crash_while_writing_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    data = dataset(corpus)
    config = dataclasses.replace(TRAIN, save=str(tmp_path / "ckpt"), save_interval=5)
    real_save = torch.save
    calls = []

    def crashing_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as handle:
                handle.write(b"partial")
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        pretrain(MODEL, config, data, ParallelState.single(), log=lambda _: None)
    monkeypatch.setattr(checkpointing.torch, "save", real_save)
    assert checkpointing.latest_iteration(tmp_path / "ckpt") == 5
    assert checkpointing.load_checkpoint(tmp_path / "ckpt", ParallelState.single())["iteration"] == 5


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_skipped_overflow(corpus, precision):
    data = dataset(corpus)
    config = dataclasses.replace(TRAIN, precision=precision, train_iters=4)
    snapshots = {}

    def inject(model, iteration):
        snapshots[iteration] = [p.detach().clone() for p in model.parameters()]
        if iteration == 2 and precision == "fp16":
            next(model.parameters()).grad.view(-1)[0] = float("inf")

    result = pretrain(MODEL, config, data, ParallelState.single(), log=lambda _: None, after_backward=inject)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    if precision == "fp16":
        assert [r["skipped"] for r in result.history] == [0, 0, 1, 1]
        assert result.history[2]["loss_scale"] == config.initial_loss_scale / 2
        assert all(torch.equal(a, b) for a, b in zip(snapshots[2], snapshots[3], strict=True)), "step 3 was applied"


def test_bad_configuration_fails_before_training(corpus, tmp_path):
    with pytest.raises(ConfigError, match="global_batch_size 9 is not divisible"):
        pretrain(MODEL, dataclasses.replace(TRAIN, global_batch_size=9), dataset(corpus), ParallelState.single())
    pretrain(MODEL, dataclasses.replace(TRAIN, train_iters=1, save=str(tmp_path / "c")), dataset(corpus),
             ParallelState.single(), log=lambda _: None)
    with pytest.raises(ConfigError, match="saved with tensor_model_parallel_size=1, this run uses 2"):
        checkpointing.load_checkpoint(tmp_path / "c", ParallelState(tp_size=2))
    with pytest.raises(ConfigError, match="the checkpoint has vocab_size=505, this run 600"):
        pretrain(MODEL.replace(vocab_size=600), dataclasses.replace(TRAIN, load=str(tmp_path / "c")),
                 dataset(corpus), ParallelState.single(), log=lambda _: None)


def check_zero1(prefix: str, save_dir: str) -> None:
    """TP=2 x DP=2: ZeRO-1 trains like the replicated optimizer, holds part of its state per DP rank, and its
    checkpoint resumes without ZeRO."""
    import torch.distributed as dist

    from megabio.model import BertForPretraining
    from megabio.training.optimizer import build_optimizer

    state = initialize(tensor_model_parallel_size=2)
    zero_config = dataclasses.replace(TRAIN, use_distributed_optimizer=True)
    model = BertForPretraining(MODEL, state)
    optimizer = build_optimizer(model, zero_config, state)
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()
    held = torch.tensor([len(optimizer.optim.state)])
    assert 0 < held.item() < len(list(model.parameters()))
    dist.all_reduce(held, group=state.dp_group)
    assert held.item() == len(list(model.parameters())), "every parameter's state lives on exactly one DP rank"

    data = dataset(prefix)
    plain = pretrain(MODEL, TRAIN, data, state, log=lambda _: None)
    zero = pretrain(MODEL, dataclasses.replace(zero_config, save=save_dir, save_interval=5), data, state,
                    log=lambda _: None)
    for ours, reference in zip(zero.history, plain.history, strict=True):
        assert abs(ours["loss"] - reference["loss"]) <= 1e-6 * abs(reference["loss"]), (ours, reference)
    dist.barrier()
    if state.tp_rank == 0 and state.dp_rank == 0:
        (Path(save_dir) / "latest_checkpointed_iteration.txt").write_text("5\n")
    dist.barrier()
    resumed = pretrain(MODEL, dataclasses.replace(TRAIN, load=save_dir), data, state, log=lambda _: None)
    for ours, reference in zip(resumed.history, plain.history[5:], strict=True):
        assert abs(ours["loss"] - reference["loss"]) <= 1e-6 * abs(reference["loss"]), (ours, reference)


def test_zero1_distributed_optimizer(corpus, tmp_path):
    run_distributed(check_zero1, 4, str(corpus), str(tmp_path / "ckpt"))


def test_logs_and_tensorboard_scalars(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = []
    config = dataclasses.replace(TRAIN, train_iters=4, log_interval=2, tensorboard_dir=str(tmp_path / "tb"))
    result = pretrain(MODEL, config, dataset(corpus), ParallelState.single(), log=logs.append)
    steps = [line for line in logs if line.startswith("iteration")]
    assert [int(line.split()[1]) for line in steps] == [1, 2, 4]
    for field in ("mlm loss", "binary loss", "samples/s", "tokens/s", "model TFLOP/s", "peak memory/rank"):
        assert field in steps[0], field
    last = result.history[-1]
    assert abs(last["mlm_loss"] + last["binary_loss"] - last["loss"]) < 1e-6 and last["binary_loss"] > 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for tag in ("loss", "mlm_loss", "binary_loss", "lr", "grad_norm", "tokens_per_second", "peak_memory_mib"):
        assert [e.step for e in events.Scalars(f"train/{tag}")] == [1, 2, 4], tag
