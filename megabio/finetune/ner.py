"""The NER recipe: fine-tune a token classifier on IOB files, keep the best dev F1, score with conlleval's
entity-level F1, and tag new text with the saved model."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from megabio.config import ConfigError
from megabio.finetune.batching import evaluation_batches, pad
from megabio.finetune.checkpoints import save_task_model, task_model_from_pretrained
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.conlleval import entity_scores
from megabio.finetune.ner_data import (
    Labeling,
    Sentence,
    Window,
    check_known_tags,
    encode,
    label_map,
    read_conll,
)
from megabio.finetune.output import OutputDir
from megabio.finetune.trainer import fit, steps_per_epoch
from megabio.io.vocab import check_same_vocabulary
from megabio.model.task_models import BertForTokenClassification, HeadConfig
from megabio.parallel import ParallelState
from megabio.training.engine import Batch, Engine, autocast, training_device
from megabio.training.progress import ProgressLog

EVAL_BATCH_SIZE = 64


@dataclass(frozen=True)
class NerFiles:
    train: str
    dev: str
    test: str | None = None


def collate(windows: Sequence[Window]) -> Batch:
    """Dynamically padded tensors of some windows: input_ids, attention_mask, labels, and `positions`
    (True at the first piece of each word predicted from the window)."""
    input_ids = pad([w.input_ids for w in windows], 0)
    positions = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, window in enumerate(windows):
        positions[row, window.first_pieces] = True
    return {"input_ids": input_ids, "attention_mask": pad([[1] * len(w.input_ids) for w in windows], 0),
            "labels": pad([w.labels for w in windows], -100), "positions": positions}


class TokenClassificationTask:
    def loss(self, model, batch: Batch):
        loss, _ = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        return loss, {}


def predict_tags(model: BertForTokenClassification, windows: Sequence[Window], sentences: Sequence[Sentence],
                 labels: Sequence[str], device: torch.device, precision: str = "fp32",
                 batch_size: int = EVAL_BATCH_SIZE) -> list[list[str]]:
    """Tags of every word of every sentence, each read at the word's first piece in its home window."""
    predicted: list[list[str | None]] = [[None] * len(s.words) for s in sentences]
    model.eval()
    with torch.no_grad():
        for indices in evaluation_batches([len(w.input_ids) for w in windows], batch_size):
            chosen = [windows[i] for i in indices]
            batch = {k: v.to(device) for k, v in collate(chosen).items()}
            with autocast(precision, device):
                logits = model(batch["input_ids"], batch["attention_mask"], positions=batch["positions"])
            classes = logits.argmax(-1).tolist()
            cursor = 0
            for window in chosen:
                for word in window.words:
                    predicted[window.sentence][word] = labels[classes[cursor]]
                    cursor += 1
    missing = [(i, j) for i, tags in enumerate(predicted) for j, tag in enumerate(tags) if tag is None]
    if missing:  # a bug, not bad input: every word has a home window
        raise RuntimeError(f"no prediction for word {missing[0][1]} of sentence {missing[0][0]}")
    return predicted  # type: ignore[return-value]


def conll_lines(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> str:
    """`token gold predicted` (or `token predicted` without gold) per word, a blank line between sentences."""
    blocks = []
    for sentence, tags in zip(sentences, predicted, strict=True):
        gold = sentence.tags or [None] * len(sentence.words)
        blocks.append("".join(f"{w} {g} {p}\n" if g is not None else f"{w}\t{p}\n"
                              for w, g, p in zip(sentence.words, gold, tags, strict=True)))
    return "\n".join(blocks)


def finetune_ner(checkpoint: str | os.PathLike, files: NerFiles, output_dir: str | os.PathLike,
                 config: FinetuneConfig = FinetuneConfig(), labeling: Labeling = "subtoken",
                 state: ParallelState | None = None, vocab_file: str | None = None, overwrite: bool = False,
                 log: Callable[[str], None] = print) -> dict:
    """Fine-tune the encoder at `checkpoint` for NER and write the results to `output_dir` (see README)."""
    state = state or ParallelState.single()
    rank0 = state.tp_rank == 0 and state.dp_rank == 0
    output = OutputDir(output_dir, writer=rank0, overwrite=overwrite)
    train = read_conll(files.train)
    labels = label_map(train)
    dev = read_conll(files.dev)
    check_known_tags(dev, labels, files.dev)
    test = read_conll(files.test) if files.test else None
    if test is not None:
        check_known_tags(test, labels, files.test)
    head = HeadConfig(len(labels), config.num_fc_layers, config.fc_hidden_size, config.fc_dropout)
    model, tokenizer, info = task_model_from_pretrained("token", checkpoint, head, state, config.seed)
    if vocab_file is not None:
        check_same_vocabulary(vocab_file, info["vocab"])
    if config.seq_length > model.config.max_position_embeddings:
        raise ConfigError(f"--seq-length {config.seq_length} exceeds the checkpoint's max_position_embeddings="
                          f"{model.config.max_position_embeddings}")
    device = training_device()
    model.to(device)
    train_windows = encode(train, tokenizer, labels, config.seq_length, labeling)
    dev_windows = encode(dev, tokenizer, labels, config.seq_length, labeling)
    log(f"NER: {len(train)} train sentences ({len(train_windows)} windows), {len(dev)} dev, labels "
        f"{', '.join(labels)}; {labeling} labelling; TP={state.tp_size} DP={state.dp_size}")
    steps = config.epochs * steps_per_epoch(len(train_windows), config, state.dp_size)
    engine = Engine(model, TokenClassificationTask(), config.train_config(steps, state.dp_size), state, device)

    def dev_f1() -> float:
        return entity_scores([s.tags for s in dev], predict_tags(model, dev_windows, dev, labels, device,
                                                                  config.precision)).f1

    progress = ProgressLog(model.config, state, device, log, config.tensorboard_dir)
    staging = output.open()
    try:
        result = fit(engine, config, [len(w.input_ids) for w in train_windows],
                     lambda idx: collate([train_windows[i] for i in idx]), dev_f1, progress, log)
        scored, scored_windows = (test, encode(test, tokenizer, labels, config.seq_length, labeling)) \
            if test is not None else (dev, dev_windows)
        predicted = predict_tags(model, scored_windows, scored, labels, device, config.precision)
        scores = entity_scores([s.tags for s in scored], predicted)
        metrics = {**scores.as_dict(), "evaluated_on": "test" if test is not None else "dev",
                   "dev_f1": result.dev_scores, "best_epoch": result.best_epoch,
                   "epoch_seconds": result.epoch_seconds, "train_loss": result.epoch_losses,
                   "labeling": labeling, "labels": labels}
        output.write_json("metrics.json", metrics)
        output.write_text("predictions.conll", conll_lines(scored, predicted))
        output.write_json("labels.json", labels)
        save_task_model(staging / "model", model, state, info["vocab"], info["lower_case"], {
            "kind": "token", "name": "ner", "head": head.to_dict(), "labels": labels,
            "labeling": labeling, "seq_length": config.seq_length})
        output.commit()
    except BaseException:
        output.discard()
        raise
    log(f"NER {metrics['evaluated_on']}: precision {scores.precision:.2f} recall {scores.recall:.2f} "
        f"F1 {scores.f1:.2f} (best dev epoch {result.best_epoch}); wrote {output_dir}")
    return metrics


def model_directory(path: str | os.PathLike) -> Path:
    """A fine-tuning output directory or the model directory inside it."""
    path = Path(path)
    return path / "model" if (path / "model").is_dir() else path


def read_ner_input(path: str | os.PathLike, input_format: str, tokenizer) -> list[Sentence]:
    """Sentences to tag: CoNLL (a token per line, tags optional) or raw text (a sentence per line, split
    into words as BERT does). `auto`: CoNLL when any line holds a tab, else text."""
    if input_format == "auto":
        with open(path, encoding="utf-8") as handle:
            input_format = "conll" if any("\t" in line for line in handle) else "text"
    if input_format == "conll":
        return read_conll(path, require_tags=False)
    if input_format == "text":
        from megabio.finetune.ner_data import read_text

        return read_text(path, tokenizer.pre_tokenizer.pre_tokenize_str)
    raise ConfigError(f"--input-format {input_format!r}: choose auto, conll or text")


def predict_ner(model_dir: str | os.PathLike, input_path: str | os.PathLike, input_format: str = "auto",
                batch_size: int = EVAL_BATCH_SIZE) -> str:
    """CoNLL lines tagging `input_path` with a fine-tuned NER model (`token<TAB>tag`, or `token gold
    predicted` when the input carries tags)."""
    from megabio.finetune.checkpoints import load_task_model

    model, tokenizer, task = load_task_model(model_directory(model_dir))
    if task.get("name") != "ner":
        raise ConfigError(f"--model {model_dir}: a {task.get('name')} model, not NER")
    sentences = read_ner_input(input_path, input_format, tokenizer)
    labels = task["labels"]
    windows = encode([Sentence(s.words, None, s.line) for s in sentences], tokenizer, labels, task["seq_length"])
    predicted = predict_tags(model, windows, sentences, labels, torch.device("cpu"), batch_size=batch_size)
    return conll_lines(sentences, predicted)


def evaluate_ner(gold_path: str | os.PathLike, pred_path: str | os.PathLike) -> dict:
    """conlleval scores of two CoNLL files whose last column is the tag (sentences and words aligned)."""
    gold, pred = read_conll(gold_path, require_tags=False), read_conll(pred_path, require_tags=False)
    for path, sentences in ((gold_path, gold), (pred_path, pred)):
        untagged = next((s for s in sentences if s.tags is None), None)
        if untagged is not None:
            raise ConfigError(f"{path}:{untagged.line}: no tag column")
    for g, p in zip(gold, pred, strict=False):
        if g.words != p.words:
            raise ConfigError(f"{pred_path}:{p.line}: the sentence's words differ from {gold_path}:{g.line}")
    if len(gold) != len(pred):
        raise ConfigError(f"{pred_path}: {len(pred)} sentences, {gold_path} has {len(gold)}")
    return entity_scores([s.tags for s in gold], [s.tags for s in pred]).as_dict()
