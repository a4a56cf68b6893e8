"""`megabio pretrain`: Megatron-style flags onto ModelConfig / TrainConfig, the process groups, the data,
SIGTERM handling, then the train loop. Works in one process or under torchrun (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch.distributed as dist

from megabio.config import PRESETS, ConfigError, ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings, BlendedDataset, parse_data_path, read_vocab
from megabio.parallel import initialize
from megabio.parallel.launch import init_process_group_from_env
from megabio.sizing import model_report
from megabio.training.checkpointing import latest_iteration
from megabio.training.config import TrainConfig
from megabio.training.loop import StopFlag, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=list(PRESETS), help="model shape (or give the three shape flags)")
    model.add_argument("--num-layers", type=int)
    model.add_argument("--hidden-size", type=int)
    model.add_argument("--num-attention-heads", type=int)
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
    defaults = TrainConfig()
    for name in ("micro_batch_size", "global_batch_size", "seq_length", "train_iters", "lr", "min_lr",
                 "lr_warmup_fraction", "weight_decay", "clip_grad", "adam_beta1", "adam_beta2", "adam_eps",
                 "seed", "log_interval", "save_interval", "initial_loss_scale"):
        value = getattr(defaults, name)
        train.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    train.add_argument("--lr-decay-style", choices=("linear", "cosine", "constant"), default="linear")
    precision = train.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_const", dest="precision", const="bf16")
    precision.add_argument("--fp16", action="store_const", dest="precision", const="fp16")
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
    parser.set_defaults(precision="fp32")


def model_config(args: argparse.Namespace, vocab_size: int) -> ModelConfig:
    common = dict(vocab_size=vocab_size, binary_head=args.binary_head, recompute_activations=args.recompute_activations,
                  hidden_dropout=args.hidden_dropout, attention_dropout=args.attention_dropout,
                  attention_backend=args.attention_backend)
    if args.init_from:
        config = init_from_config(args, common)
    elif args.preset:
        config = ModelConfig.from_preset(args.preset, **common)
    else:
        shape = (args.num_layers, args.hidden_size, args.num_attention_heads)
        if None in shape:
            raise ConfigError("give --preset, or all of --num-layers, --hidden-size and --num-attention-heads")
        config = ModelConfig(num_layers=shape[0], hidden_size=shape[1], num_attention_heads=shape[2],
                             ffn_hidden_size=4 * shape[1], max_position_embeddings=max(args.seq_length, 512), **common)
    if args.seq_length > config.max_position_embeddings:
        raise ConfigError(f"--seq-length {args.seq_length} exceeds the model's max_position_embeddings="
                          f"{config.max_position_embeddings}")
    return config


def init_from_config(args: argparse.Namespace, common: dict) -> ModelConfig:
    """The --init-from checkpoint's shape with this run's dropout, recomputation and binary head; shape flags,
    if given, must agree with it, and --vocab-file must be its vocabulary."""
    from megabio.convert import pretrained_config

    config, vocab = pretrained_config(args.init_from)
    wanted = ModelConfig.from_preset(args.preset).to_dict() if args.preset else {}
    wanted.update({k: v for k, v in (("num_layers", args.num_layers), ("hidden_size", args.hidden_size),
                                     ("num_attention_heads", args.num_attention_heads)) if v is not None})
    for key in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size"):
        if key in wanted and wanted[key] != getattr(config, key):
            raise ConfigError(f"--init-from {args.init_from} has {key}={getattr(config, key)}, the shape flags "
                              f"ask for {wanted[key]}: drop them or choose a matching checkpoint")
    check_same_vocabulary(args.vocab_file, vocab)
    return config.replace(**common)


def check_same_vocabulary(vocab_file: str, checkpoint_vocab: Path) -> None:
    ours, theirs = read_vocab(vocab_file), read_vocab(str(checkpoint_vocab))
    if ours == theirs:
        return
    if len(ours) != len(theirs):
        raise ConfigError(f"--vocab-file {vocab_file} has {len(ours)} tokens, the --init-from checkpoint's "
                          f"{checkpoint_vocab} {len(theirs)}: the data must be preprocessed with the checkpoint's "
                          f"vocabulary")
    line = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b) + 1
    raise ConfigError(f"--vocab-file {vocab_file} line {line} differs from {checkpoint_vocab}: the data must be "
                      f"preprocessed with the checkpoint's vocabulary")


def _check_vocabulary(prefix: str, data: BertDataset, vocab_size: int) -> None:
    """Ids at or past the vocabulary size mean the data was preprocessed with another vocabulary."""
    sample = [data.data[i] for i in range(min(len(data.data), 1000))]
    top = max((int(s.max()) for s in sample if len(s)), default=-1)
    if top >= vocab_size:
        raise ConfigError(f"{prefix}: token id {top} is past --vocab-file's {vocab_size} entries: was it "
                          f"preprocessed with another vocabulary?")


def train_config(args: argparse.Namespace) -> TrainConfig:
    fields = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)}
    return TrainConfig(**fields)


def _check_writable(directory: str) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        probe = Path(directory) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"--save {directory}: not writable ({error})") from None


def _keep_vocabulary(directory: str, vocab_file: str) -> None:
    """vocab.txt beside the checkpoints, so `load_pretrained` and `megabio convert` read them as they are."""
    kept = Path(directory) / "vocab.txt"
    text = Path(vocab_file).read_text(encoding="utf-8")
    if kept.is_file():
        if kept.read_text(encoding="utf-8") != text:
            raise ConfigError(f"--save {directory} holds checkpoints of another vocabulary ({kept} differs from "
                              f"--vocab-file {vocab_file})")
        return
    tmp = kept.with_name(f".vocab.txt.tmp-{os.getpid()}")  # every rank may write it: same text, atomic rename
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, kept)


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
    memory = report["training_memory_per_rank_bytes"]
    print(json.dumps({"model": model.to_dict(), "train": config.to_dict()}, indent=2))
    print(f"layout: world {args.world_size} = TP {tp} x DP {dp}; {micro} micro-batch(es) of "
          f"{config.micro_batch_size} per step and DP rank"
          + ("; optimizer state sharded over DP (ZeRO-1)" if args.use_distributed_optimizer and dp > 1 else ""))
    gib = {key: value / 2**30 for key, value in memory.items()}
    print(f"parameters: {report['parameters']:,} ({report['parameters_per_rank']:,} per rank); estimated memory "
          f"per rank: {gib['total']:.1f} GiB (weights+grads+Adam {gib['parameters_and_optimizer']:.1f}, "
          f"activations {gib['activations']:.1f})")
    return 0


def run(args: argparse.Namespace) -> int:
    vocab = read_vocab(args.vocab_file)
    model = model_config(args, len(vocab))
    config = train_config(args)
    if args.dry_run:
        return dry_run(model, config, args)
    if config.save:
        _check_writable(config.save)
        _keep_vocabulary(config.save, args.vocab_file)
    init_process_group_from_env()
    state = initialize(args.tensor_model_parallel_size, sequence_parallel=args.sequence_parallel)
    model.check_tensor_parallel(state.tp_size)
    config.num_micro_batches(state.dp_size)
    samples = BertSampleSettings(max_seq_length=config.seq_length, binary_head=args.binary_head,
                                 masked_lm_prob=args.masked_lm_prob, short_seq_prob=args.short_seq_prob,
                                 seed=config.seed, num_epochs=1000,
                                 max_num_samples=config.train_iters * config.global_batch_size)
    weighted = parse_data_path(args.data_path)
    datasets = [BertDataset(prefix, vocab, samples) for _, prefix in weighted]
    for (_, prefix), data in zip(weighted, datasets, strict=True):
        _check_vocabulary(prefix, data, len(vocab))
    dataset = datasets[0] if len(datasets) == 1 else BlendedDataset(
        datasets, [w for w, _ in weighted], config.train_iters * config.global_batch_size)
    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda *_: setattr(stop, "requested", True))
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    log = (lambda message: print(message, flush=True)) if rank0 else (lambda message: None)
    log(f"megabio pretrain: {model.num_layers} layers x {model.hidden_size}, vocab {model.vocab_size}, "
        f"TP={state.tp_size} DP={state.dp_size}, {config.train_iters} iterations of {config.global_batch_size}")
    initial = None
    if config.init_from and not (config.load and latest_iteration(config.load) is not None):
        from megabio.convert import pretrained_shard

        initial = pretrained_shard(config.init_from, model, state)
    pretrain(model, config, dataset, state, log=log, stop=stop, initial_weights=initial)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megabio pretrain", description=__doc__)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except (ConfigError, ValueError, OSError) as error:
        print(f"megabio pretrain: error: {error}", file=sys.stderr)
        return 2
