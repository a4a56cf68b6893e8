"""`megabio pretrain`: Megatron-style flags onto ModelConfig / TrainConfig, the process groups, the data,
SIGTERM handling, then the train loop. Works in one process or under torchrun (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import torch.distributed as dist

from megabio.cli.common import (
    add_precision_flags,
    field_help,
    first_rank_log,
    parallel_state,
    print_memory_report,
    run_reporting_errors,
    show_defaults,
)
from megabio.cli.megatron_flags import translate
from megabio.config import PRESETS, ConfigError, ModelConfig
from megabio.data.bert_dataset import BertSampleSettings
from megabio.io.vocab import read_vocab
from megabio.sizing import model_report
from megabio.training.config import TrainConfig
from megabio.training.loop import StopFlag, pretrain
from megabio.training.pretrain_setup import (
    build_pretraining_dataset,
    initial_weights,
    prepare_save_directory,
    resolve_model_config,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=list(PRESETS), help="model shape (or give the three shape flags)")
    model.add_argument("--num-layers", type=int)
    model.add_argument("--hidden-size", type=int)
    model.add_argument("--num-attention-heads", type=int)
    model.add_argument("--max-position-embeddings", type=int,
                       help="Megatron's flag: must equal the model's (the preset's or checkpoint's) when given")
    model.add_argument("--binary-head", choices=("sop", "nsp", "none"), default="sop")
    model.add_argument("--recompute-activations", action="store_true")
    model.add_argument("--hidden-dropout", type=float, default=0.1)
    model.add_argument("--attention-dropout", type=float, default=0.1)
    model.add_argument("--attention-backend", choices=("auto", "sdpa", "softmax"), default="auto",
                       help="auto: megabio's fused softmax + dropout kernels on CPU while training, "
                            "torch's scaled_dot_product_attention otherwise")
    data = parser.add_argument_group("data")
    data.add_argument("--data-path", nargs="+", required=True, help="PREFIX, or WEIGHT PREFIX pairs")
    data.add_argument("--vocab-file", required=True)
    data.add_argument("--masked-lm-prob", type=float, default=0.15)
    data.add_argument("--short-seq-prob", type=float, default=0.1)
    parallel = parser.add_argument_group("parallelism")
    parallel.add_argument("--tensor-model-parallel-size", type=int, default=1)
    parallel.add_argument("--sequence-parallel", action="store_true")
    parallel.add_argument("--use-distributed-optimizer", action="store_true",
                          help="ZeRO-1: shard the optimizer state over data-parallel ranks")
    train = parser.add_argument_group("training")
    defaults, docs = TrainConfig(), field_help(TrainConfig)
    for name in ("micro_batch_size", "global_batch_size", "seq_length", "train_iters", "lr", "min_lr",
                 "lr_warmup_fraction", "weight_decay", "clip_grad", "adam_beta1", "adam_beta2", "adam_eps",
                 "seed", "log_interval", "save_interval", "initial_loss_scale"):
        value = getattr(defaults, name)
        train.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=docs[name])
    train.add_argument("--lr-decay-style", choices=("linear", "cosine", "constant"), default="linear")
    train.add_argument("--lr-warmup-iters", type=int, help="Megatron's flag: warmup steps (instead of a fraction)")
    train.add_argument("--lr-decay-iters", type=int,
                       help="Megatron's flag: the LR decays over --train-iters here, so it must equal that")
    add_precision_flags(train)
    train.add_argument("--save")
    train.add_argument("--load", help="resume from the latest checkpoint here, if there is one")
    train.add_argument("--init-from", metavar="DIR",
                       help="start from this checkpoint (megabio, Hugging Face BERT / MegatronBert directory); "
                            "its shape is the model's, and --vocab-file must be its vocabulary")
    train.add_argument("--tensorboard-dir")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, parallel layout and memory per rank, then exit")
    parser.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")),
                        help="processes in the job, for --dry-run (default: $WORLD_SIZE or 1)")


def model_config(args: argparse.Namespace, vocab_size: int) -> ModelConfig:
    config = _resolved_model_config(args, vocab_size)
    if args.max_position_embeddings not in (None, config.max_position_embeddings):
        raise ConfigError(f"--max-position-embeddings {args.max_position_embeddings}: the model has "
                          f"{config.max_position_embeddings} positions; drop the flag or choose such a model")
    return config


def _resolved_model_config(args: argparse.Namespace, vocab_size: int) -> ModelConfig:
    return resolve_model_config(
        vocab_size, args.seq_length, preset=args.preset,
        shape={"num_layers": args.num_layers, "hidden_size": args.hidden_size,
               "num_attention_heads": args.num_attention_heads},
        init_from=args.init_from, vocab_file=args.vocab_file, binary_head=args.binary_head,
        recompute_activations=args.recompute_activations, hidden_dropout=args.hidden_dropout,
        attention_dropout=args.attention_dropout, attention_backend=args.attention_backend)


def train_config(args: argparse.Namespace) -> TrainConfig:
    fields = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)}
    if args.lr_warmup_iters is not None:
        fields["lr_warmup_fraction"] = args.lr_warmup_iters / args.train_iters
    if args.lr_decay_iters is not None and args.lr_decay_iters != args.train_iters:
        raise ConfigError(f"--lr-decay-iters {args.lr_decay_iters}: the LR decays over --train-iters "
                          f"({args.train_iters}) here; set them equal, or train for {args.lr_decay_iters} iterations")
    return TrainConfig(**fields)


def dry_run(model: ModelConfig, config: TrainConfig, args: argparse.Namespace) -> int:
    """What the job would be, without starting it: config, layout, parameters and memory per rank."""
    tp = args.tensor_model_parallel_size
    if args.world_size % tp:
        raise ConfigError(f"--world-size {args.world_size} is not divisible by --tensor-model-parallel-size {tp}")
    dp = args.world_size // tp
    micro = config.num_micro_batches(dp)
    report = model_report(model, tp, micro_batch_size=config.micro_batch_size, seq_length=config.seq_length,
                          precision=config.precision, recompute_activations=model.recompute_activations,
                          sequence_parallel=args.sequence_parallel, data_parallel_size=dp,
                          distributed_optimizer=args.use_distributed_optimizer)
    print(json.dumps({"model": model.to_dict(), "train": config.to_dict()}, indent=2))
    print(f"layout: world {args.world_size} = TP {tp} x DP {dp}; {micro} micro-batch(es) of "
          f"{config.micro_batch_size} per step and DP rank"
          + ("; optimizer state sharded over DP (ZeRO-1)" if args.use_distributed_optimizer and dp > 1 else ""))
    print_memory_report(model, report, tp, config.precision, config.micro_batch_size)
    return 0


def run(args: argparse.Namespace) -> int:
    vocab = read_vocab(args.vocab_file)
    model = model_config(args, len(vocab))
    config = train_config(args)
    if args.dry_run:
        return dry_run(model, config, args)
    if config.save:
        prepare_save_directory(config.save, args.vocab_file)
    state = parallel_state(args.tensor_model_parallel_size, args.sequence_parallel)
    model.check_tensor_parallel(state.tp_size)
    config.num_micro_batches(state.dp_size)
    samples = BertSampleSettings(max_seq_length=config.seq_length, binary_head=args.binary_head,
                                 masked_lm_prob=args.masked_lm_prob, short_seq_prob=args.short_seq_prob,
                                 seed=config.seed, num_epochs=1000,
                                 max_num_samples=config.train_iters * config.global_batch_size)
    dataset = build_pretraining_dataset(args.data_path, vocab, config, samples)
    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda *_: setattr(stop, "requested", True))
    log = first_rank_log(state, sys.stdout)
    log(f"megabio pretrain: {model.num_layers} layers x {model.hidden_size}, vocab {model.vocab_size}, "
        f"TP={state.tp_size} DP={state.dp_size}, {config.train_iters} iterations of {config.global_batch_size}")
    pretrain(model, config, dataset, state, log=log, stop=stop, initial_weights=initial_weights(config, model, state))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megabio pretrain", description=__doc__)
    add_arguments(parser)
    show_defaults(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_reporting_errors(lambda: run(parser.parse_args(translate(argv))), "megabio pretrain")
