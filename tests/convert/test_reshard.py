"""TP resharding of megabio checkpoints: TP=2 -> 1 -> 4 keeps every weight bit for bit, and the sharded
models on real processes give the single-process logits (in float64, to summation-order rounding)."""

from __future__ import annotations

import dataclasses

import torch
from transformers import BertConfig, BertForPreTraining

import megabio
from megabio.checkpoint import read_checkpoint
from megabio.convert import convert
from megabio.parallel import ParallelState, gather_from_tensor_parallel_region, initialize
from megabio.training.loop import StopFlag, pretrain
from tests.convert.test_hf import SHAPE, inputs, save_hf
from tests.distributed import run_distributed


def check_sharded_logits(checkpoint: str, tp: int, expected_file: str) -> None:
    state = initialize(tensor_model_parallel_size=tp)
    model, *_ = megabio.load_pretrained(checkpoint, parallel_state=state)
    ids, mask, types = inputs()
    with torch.no_grad():
        logits = gather_from_tensor_parallel_region(model.double().eval()(ids, mask, types)[1], state)
    expected = torch.load(expected_file, weights_only=True)
    torch.testing.assert_close(logits[..., :1100], expected, rtol=1e-12, atol=1e-12)


def test_reshard_2_to_1_to_4(tmp_path):
    torch.manual_seed(0)
    hf = save_hf(BertForPreTraining(BertConfig(**SHAPE)), tmp_path / "hf")
    convert("hf-bert", "megabio", hf, tmp_path / "tp2", target_tensor_model_parallel_size=2)
    assert sorted(p.name for p in (tmp_path / "tp2" / "release").iterdir()) == ["mp_rank_00", "mp_rank_01"]
    convert("megabio", "megabio", tmp_path / "tp2", tmp_path / "tp1")
    convert("megabio", "megabio", tmp_path / "tp1", tmp_path / "tp4", target_tensor_model_parallel_size=4)
    full1, _, _ = read_checkpoint(tmp_path / "tp1")
    full4, _, _ = read_checkpoint(tmp_path / "tp4")
    assert all(torch.equal(full1[k], full4[k]) for k in full1)

    model, *_ = megabio.load_pretrained(tmp_path / "tp1")
    ids, mask, types = inputs()
    with torch.no_grad():
        expected = model.double().eval()(ids, mask, types)[1][..., :1100]
    torch.save(expected, tmp_path / "expected.pt")
    run_distributed(check_sharded_logits, 2, str(tmp_path / "tp2"), 2, str(tmp_path / "expected.pt"))
    run_distributed(check_sharded_logits, 4, str(tmp_path / "tp4"), 4, str(tmp_path / "expected.pt"))


def resume_at_tp2(checkpoint: str, corpus: str, expected_file: str) -> None:
    from tests.training.test_pretrain import MODEL, TRAIN, dataset

    state = initialize(tensor_model_parallel_size=2)
    resumed = pretrain(MODEL, dataclasses.replace(TRAIN, load=checkpoint), dataset(corpus), state,
                       log=lambda _: None)
    expected = torch.load(expected_file, weights_only=True)
    ours = torch.tensor([r["loss"] for r in resumed.history], dtype=torch.float64)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0)


def test_training_checkpoint_reshards_with_its_optimizer_state(tmp_path):
    """A TP=1 run stopped at step 5, resharded to TP=2 (weights and Adam moments), resumes on two processes
    with the losses of the uninterrupted run; TP 1 -> 2 -> 1 gives back every moment bit for bit."""
    from tests.data.test_bert_dataset import VOCAB, random_corpus
    from tests.training.test_pretrain import MODEL, TRAIN, dataset

    corpus = random_corpus(tmp_path / "corpus", documents=120)
    data = dataset(corpus)
    full = pretrain(MODEL, TRAIN, data, ParallelState.single(), log=lambda _: None)
    stop = StopFlag()
    pretrain(MODEL, dataclasses.replace(TRAIN, save=str(tmp_path / "tp1")), data, ParallelState.single(),
             log=lambda _: None, stop=stop, after_backward=lambda _, i: setattr(stop, "requested", i == 4))
    (tmp_path / "tp1" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")  # as `megabio pretrain --save` keeps it
    report = convert("megabio", "megabio", tmp_path / "tp1", tmp_path / "tp2", target_tensor_model_parallel_size=2)
    assert report["optimizer_state"] == "resharded to TP=2"
    torch.save(torch.tensor([r["loss"] for r in full.history[5:]], dtype=torch.float64), tmp_path / "expected.pt")
    run_distributed(resume_at_tp2, 2, str(tmp_path / "tp2"), str(corpus), str(tmp_path / "expected.pt"))

    convert("megabio", "megabio", tmp_path / "tp2", tmp_path / "back")
    _, _, original = read_checkpoint(tmp_path / "tp1")
    _, _, back = read_checkpoint(tmp_path / "back")
    assert back["iteration"] == 5 and back["consumed_samples"] == original["consumed_samples"]
    for name, entries in original["optimizer"]["state"].items():
        for key, value in entries.items():
            assert torch.equal(back["optimizer"]["state"][name][key], value), (name, key)
