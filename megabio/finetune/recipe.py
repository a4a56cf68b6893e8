"""What every fine-tuning recipe does the same way: start a task model from any checkpoint, train it on the
engine keeping the best dev epoch, score it, and write the outputs (metrics.json, predictions, labels.json,
the model) into a directory that appears only when complete. A recipe supplies its data as a `TaskData`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megabio.config import ConfigError
from megabio.finetune.batching import evaluation_batches
from megabio.finetune.checkpoints import save_task_model, task_model_from_pretrained
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.output import OutputDir
from megabio.finetune.trainer import fit, steps_per_epoch
from megabio.io.vocab import check_same_vocabulary
from megabio.model.task_models import HeadConfig, TaskKind
from megabio.parallel import ParallelState
from megabio.training.engine import Batch, Engine, Task, evaluate, slow_precision_note, training_device
from megabio.training.progress import ProgressLog


@dataclass(frozen=True)
class TaskFiles:
    """A recipe's training, dev and (optional) test files; the test set is scored at the end, else dev."""

    train: str
    dev: str
    test: str | None = None


def read_splits(files: TaskFiles, read: Callable, label_map: Callable, check_known: Callable):
    """(train, dev, test or None, labels): the label set is the training set's; a dev or test label outside
    it is an error naming its file and line."""
    train = read(files.train)
    labels = label_map(train)
    splits = {}
    for name, path in (("dev", files.dev), ("test", files.test)):
        splits[name] = train if path == files.train else read(path) if path else None
        if splits[name] is not None:
            check_known(splits[name], labels, path)
    return train, splits["dev"], splits["test"], labels


def encode_splits(splits: dict[str, Any], encode: Callable[[str, Any], list]) -> dict[str, list]:
    """`encode(name, data)` of every split, once per distinct data: the dev set scored when there is no test
    set, or a dev set read from the training file, shares its encoding."""
    done: dict[int, list] = {}
    for name, data in splits.items():
        if id(data) not in done:
            done[id(data)] = encode(name, data)
    return {name: done[id(data)] for name, data in splits.items()}


class ModelLoss:
    """The task model's own loss, given the batch entries named in `inputs`."""

    def __init__(self, *inputs: str) -> None:
        self.inputs = inputs

    def loss(self, model, batch: Batch):
        loss, _ = model(**{name: batch[name] for name in self.inputs if name in batch})
        return loss, {}


def predict_in_batches(model, lengths: list[int], collate: Callable[[list[int]], Batch], forward,
                       device, precision: str, batch_size: int = 64):
    """Yield (example indices, `forward(model, batch)`) over length-sorted batches, in eval mode."""
    batches = ((indices, collate(indices)) for indices in evaluation_batches(lengths, batch_size))
    return evaluate(model, batches, forward, device, precision)


@dataclass
class TaskData:
    """A recipe's encoded data and how to score it, built once the model and tokenizer exist."""

    task: Task
    train_lengths: list[int]
    collate: Callable[[list[int]], Batch]
    """Training micro-batch of the given example indices."""
    dev_score: Callable[[], float]
    """The dev set's score (higher is better) with the model as it is."""
    finish: Callable[[], tuple[dict[str, Any], dict[str, str]]]
    """Final (metrics, {file name: text}) with the best model."""
    saved: dict[str, Any] = field(default_factory=dict)
    """Task settings saved with the model (e.g. labelling, sequence length)."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """The recipe (`ner`, `re`, `qa`)."""
    kind: TaskKind
    labels: list[str]
    dev_metric: str
    """metrics.json key of the per-epoch dev scores (e.g. `dev_f1`)."""
    model_options: dict[str, Any] = field(default_factory=dict)


def head_config(spec: TaskSpec, config: FinetuneConfig) -> HeadConfig:
    """The task head `config` (resolved for the task: `FinetuneConfig.for_task`) asks for."""
    return HeadConfig(len(spec.labels), config.num_fc_layers, config.fc_hidden_size, config.fc_dropout)


def run_finetuning(checkpoint: str | os.PathLike, output_dir: str | os.PathLike, spec: TaskSpec,
                   prepare: Callable[[Any, Any, Any], TaskData], config: FinetuneConfig,
                   state: ParallelState | None = None, vocab_file: str | None = None, overwrite: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune the encoder at `checkpoint`; `prepare(model, tokenizer, device)` encodes the recipe's data."""
    state = state or ParallelState.single()
    config = config.for_task(spec.kind)
    output = OutputDir(output_dir, writer=state.tp_rank == 0 and state.dp_rank == 0, overwrite=overwrite)
    head = head_config(spec, config)
    model, tokenizer, info = task_model_from_pretrained(spec.kind, checkpoint, head, state, config.seed,
                                                        **spec.model_options)
    if vocab_file is not None:
        check_same_vocabulary(vocab_file, info["vocab"])
    if config.seq_length > model.config.max_position_embeddings:
        raise ConfigError(f"seq_length {config.seq_length} exceeds the checkpoint's max_position_embeddings="
                          f"{model.config.max_position_embeddings}")
    device = training_device()
    model.to(device)
    data = prepare(model, tokenizer, device)
    steps = config.epochs * steps_per_epoch(len(data.train_lengths), config, state.dp_size)
    engine = Engine(model, data.task, config.train_config(steps, state.dp_size), state, device)
    log(f"{spec.name}: {model.config.num_layers} layers x {model.config.hidden_size}, TP={state.tp_size} "
        f"DP={state.dp_size}, {config.epochs} epochs, {steps} steps on {device.type}")
    if note := slow_precision_note(config.precision, device):
        log(note)
    progress = ProgressLog(model.config, state, device, log, config.tensorboard_dir)
    staging = output.open()
    try:
        result = fit(engine, config, data.train_lengths, data.collate, data.dev_score, progress, log)
        metrics, files = data.finish()
        metrics.update({spec.dev_metric: result.dev_scores, "best_epoch": result.best_epoch,
                        "epoch_seconds": result.epoch_seconds, "train_loss": result.epoch_losses,
                        "labels": spec.labels, "config": config.to_dict()})
        output.write_json("metrics.json", metrics)
        for name, text in files.items():
            output.write_text(name, text)
        output.write_json("labels.json", spec.labels)
        save_task_model(Path(staging) / "model", model, state, info["vocab"], info["lower_case"], {
            "kind": spec.kind, "name": spec.name, "head": head.to_dict(), "labels": spec.labels,
            "options": spec.model_options, **data.saved})
        output.commit()
    except BaseException:
        output.discard()
        raise
    log(f"{spec.name}: wrote {output_dir} (best dev epoch {result.best_epoch})")
    return metrics
