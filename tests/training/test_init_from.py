"""`--init-from`: a run starts from a general-domain checkpoint's weights (equal to transformers' model),
checks that the data's vocabulary is the checkpoint's, and keeps the checkpoint's shape."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import BertConfig, BertForPreTraining

from megabio.cli import main
from megabio.convert import pretrained_config, pretrained_shard
from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.parallel import ParallelState
from megabio.training.config import TrainConfig
from megabio.training.loop import pretrain
from tests.data.test_bert_dataset import VOCAB, random_corpus


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf") / "bert"
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=len(VOCAB), hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=256, max_position_embeddings=128))
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return model.eval(), directory


def test_run_starts_from_the_checkpoints_weights(hf_checkpoint, tmp_path):
    hf_model, directory = hf_checkpoint
    config, _vocab = pretrained_config(directory)
    assert (config.num_layers, config.hidden_size, config.layernorm_order) == (2, 64, "post")
    config = config.replace(hidden_dropout=0.0, attention_dropout=0.0)
    prefix = random_corpus(tmp_path / "corpus", documents=30)
    data = BertDataset(prefix, VOCAB, BertSampleSettings(max_seq_length=64))
    ids = torch.randint(5, len(VOCAB), (2, 16), generator=torch.Generator().manual_seed(1))
    seen = {}

    def compare(model, iteration):
        if iteration == 0:
            with torch.no_grad():
                seen["ours"] = model.bert(ids, torch.ones_like(ids), torch.zeros_like(ids))
    logs = []
    pretrain(config, TrainConfig(micro_batch_size=2, global_batch_size=2, seq_length=64, train_iters=1,
                                 init_from=str(directory)),
             data, ParallelState.single(), log=logs.append, after_backward=compare,
             initial_weights=pretrained_shard(directory, config, ParallelState.single()))
    with torch.no_grad():
        expected = hf_model.bert(ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    assert (seen["ours"] - expected).abs().max() < 1e-4
    assert any(line.startswith(f"initialised from {directory}") for line in logs)


def test_vocabulary_and_shape_are_checked(hf_checkpoint, tmp_path, capsys):
    _, directory = hf_checkpoint
    prefix = random_corpus(tmp_path / "corpus", documents=20)
    other = tmp_path / "other.txt"
    other.write_text("\n".join([*VOCAB[:-1], "zzz"]) + "\n", encoding="utf-8")
    common = ["pretrain", "--init-from", str(directory), "--data-path", str(prefix), "--seq-length", "64",
              "--train-iters", "2", "--micro-batch-size", "2", "--global-batch-size", "2"]
    assert main([*common, "--vocab-file", str(other)]) == 2
    assert f"line {len(VOCAB)} differs" in capsys.readouterr().err
    same = tmp_path / "vocab.txt"
    same.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert main([*common, "--vocab-file", str(same), "--hidden-size", "128"]) == 2
    assert "has hidden_size=64, but 128 was asked for" in capsys.readouterr().err
    assert main([*common, "--vocab-file", str(same)]) == 0
    assert f"initialised from {directory}" in capsys.readouterr().out


def test_resume_takes_precedence_over_init_from(hf_checkpoint, tmp_path):
    """After a restart, --load's checkpoint wins: the run continues instead of starting again."""
    _, directory = hf_checkpoint
    config = dataclasses.replace(TrainConfig(micro_batch_size=2, global_batch_size=2, seq_length=64, train_iters=2),
                                 save=str(tmp_path / "ckpt"), load=str(tmp_path / "ckpt"))
    prefix = random_corpus(tmp_path / "corpus", documents=20)
    data = BertDataset(prefix, VOCAB, BertSampleSettings(max_seq_length=64))
    model_config, _ = pretrained_config(directory)
    pretrain(model_config, dataclasses.replace(config, train_iters=1), data, ParallelState.single(),
             log=lambda _: None, initial_weights=pretrained_shard(directory, model_config, ParallelState.single()))
    logs = []
    pretrain(model_config, config, data, ParallelState.single(), log=logs.append,
             initial_weights=pretrained_shard(directory, model_config, ParallelState.single()))
    assert any(line.startswith("resumed from") for line in logs)
    assert not any(line.startswith("initialised from") for line in logs)


def test_a_megatron_lm_checkpoint_is_pointed_to_the_converter(tmp_path, capsys):
    import argparse

    rank_file = tmp_path / "megatron" / "iter_0000010" / "mp_rank_00" / "model_optim_rng.pt"
    rank_file.parent.mkdir(parents=True)
    torch.save({"args": argparse.Namespace(num_layers=2), "model": {}}, rank_file)
    (tmp_path / "megatron" / "latest_checkpointed_iteration.txt").write_text("10\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert main(["pretrain", "--init-from", str(tmp_path / "megatron"), "--vocab-file", str(vocab),
                 "--data-path", "x"]) == 2
    assert "megabio convert --from megatron-lm" in capsys.readouterr().err
