"""The relation-extraction recipe: sentence classification on [CLS] (or on two entity markers), the best
dev micro-F1 kept, scored as micro P/R/F1 over the positive classes, and applying the saved model."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from megabio.config import ConfigError
from megabio.finetune.batching import pad_inputs
from megabio.finetune.classification_metrics import micro_scores
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.re_data import Encoded, Instance, check_known_labels, encode, label_map, read_instances
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
from megabio.parallel import ParallelState
from megabio.training.engine import Batch


def collate(examples: Sequence[Encoded]) -> Batch:
    batch = {**pad_inputs([e.input_ids for e in examples]), "labels": torch.tensor([e.label for e in examples])}
    if examples[0].markers is not None:
        batch["marker_positions"] = torch.tensor([e.markers for e in examples])
    return batch


def predict_labels(model, examples: Sequence[Encoded], labels: Sequence[str], device: torch.device,
                   precision: str = "fp32") -> list[str]:
    predicted: list[str] = [""] * len(examples)
    batches = predict_in_batches(
        model, [len(e.input_ids) for e in examples], lambda idx: collate([examples[i] for i in idx]),
        lambda m, b: m(b["input_ids"], b["attention_mask"], marker_positions=b.get("marker_positions")),
        device, precision)
    for indices, logits in batches:
        for index, label in zip(indices, logits.argmax(-1).tolist(), strict=True):
            predicted[index] = labels[label]
    return predicted


def prediction_lines(instances: Sequence[Instance], predicted: Sequence[str]) -> str:
    """`id<TAB>gold<TAB>predicted` per instance (gold empty without labels), with a header."""
    rows = ["id\tgold\tpredicted"]
    rows += [f"{i.id}\t{i.label or ''}\t{p}" for i, p in zip(instances, predicted, strict=True)]
    return "\n".join(rows) + "\n"


def finetune_relations(checkpoint: str | os.PathLike, files: TaskFiles, output_dir: str | os.PathLike,
                       config: FinetuneConfig = FinetuneConfig(), negative_label: str | None = "false",
                       entity_markers: bool = False, state: ParallelState | None = None,
                       vocab_file: str | None = None, overwrite: bool = False,
                       log: Callable[[str], None] = print) -> dict:
    """Fine-tune the encoder at `checkpoint` for relation classification; results in `output_dir`."""
    train, dev, test, labels = read_splits(files, read_instances, label_map, check_known_labels)
    if negative_label is not None and negative_label not in labels:
        raise ConfigError(f"{files.train}: the negative label {negative_label!r} does not occur (labels: "
                          f"{', '.join(labels)}); name the one left out of the metric, or none")
    scored = test if test is not None else dev
    scored_path = files.test or files.dev

    def prepare(model, tokenizer, device) -> TaskData:
        paths = {"train": files.train, "dev": files.dev, "scored": scored_path}
        encoded = encode_splits({"train": train, "dev": dev, "scored": scored},
                                lambda name, instances: encode(instances, tokenizer, labels, config.seq_length,
                                                               entity_markers, paths[name]))
        log(f"RE: {len(train)} train, {len(dev)} dev instances, labels {', '.join(labels)} (negative: "
            f"{negative_label}); {'entity markers' if entity_markers else '[CLS]'}")

        def scores(name: str, instances: list[Instance]) -> tuple[dict, list[str]]:
            predicted = predict_labels(model, encoded[name], labels, device, config.precision)
            return micro_scores([i.label for i in instances], predicted, negative_label), predicted

        def finish() -> tuple[dict, dict[str, str]]:
            metrics, predicted = scores("scored", scored)
            metrics = {**metrics, "evaluated_on": "test" if test is not None else "dev",
                       "negative_label": negative_label}
            log(f"RE {metrics['evaluated_on']}: precision {metrics['precision']:.2f} recall "
                f"{metrics['recall']:.2f} micro-F1 {metrics['micro_f1']:.2f}")
            return metrics, {"predictions.tsv": prediction_lines(scored, predicted)}

        return TaskData(ModelLoss("input_ids", "attention_mask", "labels", "marker_positions"),
                        [len(e.input_ids) for e in encoded["train"]],
                        lambda idx: collate([encoded["train"][i] for i in idx]),
                        lambda: scores("dev", dev)[0]["micro_f1"], finish,
                        {"seq_length": config.seq_length, "negative_label": negative_label})

    spec = TaskSpec("re", "sequence", labels, "dev_micro_f1", {"entity_markers": entity_markers})
    return run_finetuning(checkpoint, output_dir, spec, prepare, config, state, vocab_file, overwrite, log)


def predict_relations(model_dir: str | os.PathLike, input_path: str | os.PathLike) -> str:
    """`id<TAB>gold<TAB>predicted` lines for a TSV of sentences (labels optional) with a fine-tuned RE model."""
    from megabio.finetune.checkpoints import load_task_model, model_directory

    model, tokenizer, task = load_task_model(model_directory(model_dir))
    if task.get("name") != "re":
        raise ConfigError(f"{model_dir}: a {task.get('name')} model, not relation extraction")
    instances = read_instances(input_path, require_labels=False)
    labels = task["labels"]
    examples = encode([Instance(i.id, i.sentence, None, i.line) for i in instances], tokenizer, labels,
                      task["seq_length"], task["options"]["entity_markers"], str(input_path))
    predicted = predict_labels(model, examples, labels, torch.device("cpu"))
    return prediction_lines(instances, predicted)


def evaluate_relations(gold_path: str | os.PathLike, pred_path: str | os.PathLike,
                       negative_label: str | None = "false") -> dict:
    """Micro P/R/F1 over the positive classes of a predictions TSV (`id ... predicted`, the rows of the gold
    file in its order, as `finetune re` and `predict re` write them) against a gold relation TSV."""
    gold, predicted = read_instances(gold_path), read_instances(pred_path)
    for g, p in zip(gold, predicted, strict=False):
        if g.id != p.id:
            raise ConfigError(f"{pred_path}:{p.line}: id {p.id!r}, but {gold_path}:{g.line} has {g.id!r}")
    if len(gold) != len(predicted):
        raise ConfigError(f"{pred_path}: {len(predicted)} predictions for {len(gold)} instances in {gold_path}")
    return micro_scores([g.label for g in gold], [p.label for p in predicted], negative_label)
