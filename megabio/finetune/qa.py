"""The question-answering recipe: SQuAD-style span extraction, the best dev F1 kept, n-best answers per
question, SQuAD exact match / F1, and with a BioASQ golden file the pooled factoid submission and its
strict / lenient accuracy and MRR."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence

import torch

from megabio.config import ConfigError
from megabio.finetune.batching import pad, pad_inputs
from megabio.finetune.bioasq import load_golden, pool_nbest, scores_over_batches, submission
from megabio.finetune.config import FinetuneConfig, SpanSettings
from megabio.finetune.output import OutputDir
from megabio.finetune.qa_data import Feature, Question, make_features, read_squad
from megabio.finetune.recipe import (
    ModelLoss,
    TaskData,
    TaskFiles,
    TaskSpec,
    encode_splits,
    predict_in_batches,
    run_finetuning,
)
from megabio.finetune.squad_metrics import squad_scores
from megabio.parallel import ParallelState
from megabio.training.engine import Batch, training_device


def collate(features: Sequence[Feature]) -> Batch:
    return {**pad_inputs([f.input_ids for f in features]),
            "token_type_ids": pad([f.token_type_ids for f in features], 0),
            "start_positions": torch.tensor([f.start for f in features]),
            "end_positions": torch.tensor([f.end for f in features])}


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [e / sum(exps) for e in exps]


def nbest_answers(model, features: Sequence[Feature], questions: Sequence[Question], settings: SpanSettings,
                  device: torch.device, precision: str = "fp32") -> dict[str, list[dict]]:
    """question id -> up to n_best {"text", "probability", "start_logit", "end_logit"}, best first; an answer
    starts at a token of its window's max context, ends no earlier, and spans at most max_answer_length."""
    candidates: dict[int, dict[tuple[int, int], tuple[float, float, float]]] = {i: {} for i in range(len(questions))}
    batches = predict_in_batches(model, [len(f.input_ids) for f in features],
                                 lambda idx: collate([features[i] for i in idx]),
                                 lambda m, b: m(b["input_ids"], b["attention_mask"], b["token_type_ids"]),
                                 device, precision)
    for indices, (start_logits, end_logits) in batches:
        for row, index in enumerate(indices):
            feature = features[index]
            starts, ends = start_logits[row].tolist(), end_logits[row].tolist()
            order = sorted(feature.context_offsets, key=lambda t: -starts[t])[: settings.n_best]
            closing = sorted(feature.context_offsets, key=lambda t: -ends[t])[: settings.n_best]
            found = candidates[feature.question]
            for s in order:
                if s not in feature.max_context:
                    continue
                for e in closing:
                    if s <= e < s + settings.max_answer_length:
                        span = (feature.context_offsets[s][0], feature.context_offsets[e][1])
                        score = starts[s] + ends[e]
                        if span not in found or found[span][0] < score:
                            found[span] = (score, starts[s], ends[e])
    answers = {}
    for index, found in candidates.items():
        question = questions[index]
        best = sorted(found.items(), key=lambda item: -item[1][0])[: settings.n_best]
        if not best:
            answers[question.id] = [{"text": "", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]
            continue
        probabilities = _softmax([score for _, (score, _, _) in best])
        answers[question.id] = [{"text": question.context[a:b], "probability": p, "start_logit": s, "end_logit": e}
                                for ((a, b), (_, s, e)), p in zip(best, probabilities, strict=True)]
    return answers


def answer_scores(nbest: dict[str, list[dict]], questions: Sequence[Question]) -> dict[str, float]:
    """SQuAD `exact_match` and `f1` of each question's best answer; {} when the questions carry no answers."""
    gold = {q.id: [text for text, _ in q.answers] for q in questions if q.answers}
    return squad_scores(gold, {qid: top[0]["text"] for qid, top in nbest.items()}) if gold else {}


def _bioasq_inputs(golden: str | Sequence[str], bioasq: bool, questions: Sequence[Question], where: str
                   ) -> tuple[dict[str, dict], bool]:
    """(golden files read, whether to write the BioASQ submission: asked for or implied by golden files),
    checked before any work: golden files without factoid questions, or question ids in `where` without
    their snippet suffix, fail here."""
    goldens = load_golden([golden] if isinstance(golden, str) else golden)
    bioasq = bioasq or bool(goldens)
    if bioasq:
        pool_nbest({q.id: [] for q in questions}, where)
    return goldens, bioasq


def scored_answers(nbest: dict[str, list[dict]], questions: Sequence[Question], goldens: dict[str, dict],
                   bioasq: bool, log: Callable[[str], None]) -> tuple[dict, dict[str, str]]:
    """(metrics, {file name: text}) of n-best answers: nbest.json, predictions.json (the best answer each),
    SQuAD EM / F1 where the questions have answers; with `bioasq`, the pooled submission, scored against
    `goldens` (path -> golden JSON) when there are any."""
    best = {qid: top[0]["text"] for qid, top in nbest.items()}
    metrics: dict = answer_scores(nbest, questions)
    files = {"nbest.json": json.dumps(nbest, indent=1), "predictions.json": json.dumps(best, indent=1)}
    if bioasq:
        pooled = submission(pool_nbest(nbest))
        files["bioasq_submission.json"] = json.dumps(pooled, indent=1)
        if goldens:
            metrics["bioasq"] = scores_over_batches(goldens, pooled)
            over = f" (mean over {len(goldens)} batches)" if len(goldens) > 1 else ""
            log(f"BioASQ factoid{over}: strict {metrics['bioasq']['strict_acc']:.2f} lenient "
                f"{metrics['bioasq']['lenient_acc']:.2f} MRR {metrics['bioasq']['mrr']:.2f}")
    return metrics, files


def finetune_qa(checkpoint: str | os.PathLike, files: TaskFiles, output_dir: str | os.PathLike,
                config: FinetuneConfig = FinetuneConfig(lr=3e-5, seq_length=384),
                settings: SpanSettings = SpanSettings(), golden: str | Sequence[str] = (), bioasq: bool = False,
                state: ParallelState | None = None, vocab_file: str | None = None, overwrite: bool = False,
                log: Callable[[str], None] = print) -> dict:
    """Fine-tune the encoder at `checkpoint` for span extraction; results in `output_dir`, with `bioasq` the
    pooled BioASQ submission too, and with `golden` (one BioASQ golden file or one per test batch) also its
    scores."""
    train = read_squad(files.train)
    dev = train if files.dev == files.train else read_squad(files.dev)  # BioASQ: no dev split of its own
    test = read_squad(files.test, require_answers=False) if files.test else None
    scored = test if test is not None else dev
    goldens, bioasq = _bioasq_inputs(golden, bioasq, scored, files.test or files.dev)

    def prepare(model, tokenizer, device) -> TaskData:
        features = encode_splits({"train": train, "dev": dev, "scored": scored},
                                 lambda _, questions: make_features(questions, tokenizer, config.seq_length,
                                                                    settings.doc_stride, settings.max_query_length))
        log(f"QA: {len(train)} train questions ({len(features['train'])} windows), {len(dev)} dev")

        def answers(name: str, questions: list[Question]) -> dict[str, list[dict]]:
            return nbest_answers(model, features[name], questions, settings, device, config.precision)

        def dev_f1() -> float:
            return answer_scores(answers("dev", dev), dev)["f1"]

        def finish() -> tuple[dict, dict[str, str]]:
            metrics, files_out = scored_answers(answers("scored", scored), scored, goldens, bioasq, log)
            return {"evaluated_on": "test" if test is not None else "dev", **metrics}, files_out

        return TaskData(ModelLoss("input_ids", "attention_mask", "token_type_ids", "start_positions",
                                  "end_positions"),
                        [len(f.input_ids) for f in features["train"]],
                        lambda idx: collate([features["train"][i] for i in idx]), dev_f1, finish,
                        {"seq_length": config.seq_length, **settings.__dict__})

    return run_finetuning(checkpoint, output_dir, TaskSpec("qa", "span", ["start", "end"], "dev_f1"), prepare, config,
                          state, vocab_file, overwrite, log)


def predict_qa(model_dir: str | os.PathLike, input_path: str | os.PathLike, output_dir: str | os.PathLike,
               golden: str | Sequence[str] = (), bioasq: bool = False, overwrite: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Answer the questions of a SQuAD JSON file (answers optional) with a fine-tuned QA model, with the
    window and n-best settings it was trained with; writes what `finetune qa` writes for its scored file
    (nbest.json, predictions.json, metrics.json; with `bioasq` or `golden`, the BioASQ submission and its
    scores) into `output_dir`, staged and renamed into place."""
    from megabio.finetune.checkpoints import load_task_model, model_directory

    model, tokenizer, task = load_task_model(model_directory(model_dir))
    if task.get("name") != "qa":
        raise ConfigError(f"{model_dir}: a {task.get('name')} model, not question answering")
    questions = read_squad(input_path, require_answers=False)
    goldens, bioasq = _bioasq_inputs(golden, bioasq, questions, str(input_path))
    output = OutputDir(output_dir, writer=True, overwrite=overwrite)
    settings = SpanSettings(**{name: task[name] for name in SpanSettings().__dict__})
    features = make_features(questions, tokenizer, task["seq_length"], settings.doc_stride,
                             settings.max_query_length)
    log(f"QA: {len(questions)} questions ({len(features)} windows) from {input_path}")
    device = training_device()  # this process's GPU when there is one
    nbest = nbest_answers(model.to(device), features, questions, settings, device)
    metrics, files = scored_answers(nbest, questions, goldens, bioasq, log)
    output.open()
    try:
        output.write_json("metrics.json", metrics)
        for name, text in files.items():
            output.write_text(name, text)
        output.commit()
    except BaseException:
        output.discard()
        raise
    return metrics
