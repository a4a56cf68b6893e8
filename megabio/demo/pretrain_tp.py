"""The demo's pretraining step, run by each torchrun process: the tiny preset with TP = the job's size,
through the library (the same calls `megabio pretrain` makes).

    torchrun --standalone --nproc-per-node 2 -m megabio.demo.pretrain_tp WORKDIR DATA_PREFIX TRAIN_ITERS
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from megabio.data.bert_dataset import BertSampleSettings
from megabio.io.vocab import read_vocab
from megabio.parallel import initialize
from megabio.parallel.launch import init_process_group_from_env
from megabio.training.config import TrainConfig
from megabio.training.loop import pretrain
from megabio.training.pretrain_setup import build_pretraining_dataset, prepare_save_directory, resolve_model_config


def main(work: Path, data_prefix: str, train_iters: int) -> None:
    vocab_file = work / "vocab" / "vocab.txt"
    vocab = read_vocab(vocab_file)
    config = TrainConfig(micro_batch_size=16, global_batch_size=16, seq_length=64, train_iters=train_iters, lr=5e-3,
                         lr_warmup_fraction=0.05, log_interval=20, save=str(work / "checkpoints"),
                         save_interval=100, tensorboard_dir=str(work / "tensorboard"))
    model = resolve_model_config(len(vocab), config.seq_length, preset="tiny")
    prepare_save_directory(config.save, vocab_file)
    init_process_group_from_env()
    state = initialize(dist.get_world_size() if dist.is_initialized() else 1)
    samples = BertSampleSettings(max_seq_length=config.seq_length, seed=config.seed, num_epochs=1000,
                                 max_num_samples=train_iters * config.global_batch_size)
    dataset = build_pretraining_dataset([data_prefix], vocab, config, samples)
    first = not dist.is_initialized() or dist.get_rank() == 0
    pretrain(model, config, dataset, state, log=lambda message: first and print(message, flush=True))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
