"""The NER recipe: fine-tune a token classifier on IOB files, keep the best dev F1, score with conlleval's
entity-level F1, and tag new text with the saved model."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from megabio.config import IGNORE_INDEX, ConfigError
from megabio.finetune.batching import pad, pad_inputs
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
    read_text,
)
from megabio.finetune.recipe import (
    ModelLoss,
    TaskData,
    TaskFiles,
    TaskSpec,
    encode_splits,
    predict_in_batches,
    read_splits,
    run_finetuning,
)
from megabio.io.text import numbered_lines
from megabio.model.task_models import BertForTokenClassification
from megabio.parallel import ParallelState
from megabio.training.engine import Batch


def collate(windows: Sequence[Window]) -> Batch:
    """Dynamically padded tensors of some windows: input_ids, attention_mask, labels, and `positions`
    (True at the first piece of each word predicted from the window)."""
    inputs = pad_inputs([w.input_ids for w in windows])
    positions = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    for row, window in enumerate(windows):
        positions[row, window.first_pieces] = True
    return {**inputs, "labels": pad([w.labels for w in windows], IGNORE_INDEX), "positions": positions}


def predict_tags(model: BertForTokenClassification, windows: Sequence[Window], sentences: Sequence[Sentence],
                 labels: Sequence[str], device: torch.device, precision: str = "fp32") -> list[list[str]]:
    """Tags of every word of every sentence, each read at the word's first piece in its home window."""
    predicted: list[list[str | None]] = [[None] * len(s.words) for s in sentences]
    batches = predict_in_batches(
        model, [len(w.input_ids) for w in windows], lambda idx: collate([windows[i] for i in idx]),
        lambda m, b: m(b["input_ids"], b["attention_mask"], positions=b["positions"]).argmax(-1).tolist(),
        device, precision)
    for indices, classes in batches:
        words = [(windows[i].sentence, word) for i in indices for word in windows[i].words]
        for (sentence, word), label in zip(words, classes, strict=True):
            predicted[sentence][word] = labels[label]
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


def finetune_ner(checkpoint: str | os.PathLike, files: TaskFiles, output_dir: str | os.PathLike,
                 config: FinetuneConfig = FinetuneConfig(), labeling: Labeling = "subtoken",
                 state: ParallelState | None = None, vocab_file: str | None = None, overwrite: bool = False,
                 log: Callable[[str], None] = print) -> dict:
    """Fine-tune the encoder at `checkpoint` for NER and write the results to `output_dir` (see README)."""
    train, dev, test, labels = read_splits(files, read_conll, label_map, check_known_tags)
    scored = test if test is not None else dev

    def prepare(model, tokenizer, device) -> TaskData:
        windows = encode_splits({"train": train, "dev": dev, "scored": scored},
                                lambda _, sentences: encode(sentences, tokenizer, labels, config.seq_length, labeling))
        log(f"NER: {len(train)} train sentences ({len(windows['train'])} windows), {len(dev)} dev, labels "
            f"{', '.join(labels)}; {labeling} labelling")

        def predict(name: str, sentences: list[Sentence]) -> list[list[str]]:
            return predict_tags(model, windows[name], sentences, labels, device, config.precision)

        def finish() -> tuple[dict, dict[str, str]]:
            predicted = predict("scored", scored)
            metrics = {**entity_scores([s.tags for s in scored], predicted).as_dict(),
                       "evaluated_on": "test" if test is not None else "dev", "labeling": labeling}
            log(f"NER {metrics['evaluated_on']}: precision {metrics['precision']:.2f} recall "
                f"{metrics['recall']:.2f} F1 {metrics['f1']:.2f}")
            return metrics, {"predictions.conll": conll_lines(scored, predicted)}

        return TaskData(ModelLoss("input_ids", "attention_mask", "labels"),
                        [len(w.input_ids) for w in windows["train"]],
                        lambda idx: collate([windows["train"][i] for i in idx]),
                        lambda: entity_scores([s.tags for s in dev], predict("dev", dev)).f1, finish,
                        {"labeling": labeling, "seq_length": config.seq_length})

    return run_finetuning(checkpoint, output_dir, TaskSpec("ner", "token", labels, "dev_f1"), prepare, config,
                          state, vocab_file, overwrite, log)


def read_ner_input(path: str | os.PathLike, input_format: str, tokenizer) -> list[Sentence]:
    """Sentences to tag: CoNLL (a token per line, tags optional) or raw text (a sentence per line, split
    into words as BERT does). `auto`: CoNLL when any line holds a tab, else text."""
    if input_format == "auto":
        input_format = "conll" if any("\t" in line for _, line in numbered_lines(path)) else "text"
    if input_format == "conll":
        return read_conll(path, require_tags=False)
    if input_format == "text":
        return read_text(path, tokenizer.pre_tokenizer.pre_tokenize_str)
    raise ConfigError(f"input format {input_format!r}: choose auto, conll or text")


def predict_ner(model_dir: str | os.PathLike, input_path: str | os.PathLike, input_format: str = "auto") -> str:
    """CoNLL lines tagging `input_path` with a fine-tuned NER model (`token<TAB>tag`, or `token gold
    predicted` when the input carries tags)."""
    from megabio.finetune.checkpoints import load_task_model, model_directory

    model, tokenizer, task = load_task_model(model_directory(model_dir))
    if task.get("name") != "ner":
        raise ConfigError(f"{model_dir}: a {task.get('name')} model, not NER")
    sentences = read_ner_input(input_path, input_format, tokenizer)
    labels = task["labels"]
    windows = encode([Sentence(s.words, None, s.line) for s in sentences], tokenizer, labels, task["seq_length"])
    predicted = predict_tags(model, windows, sentences, labels, torch.device("cpu"))
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
