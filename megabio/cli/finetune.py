"""`megabio finetune`, `megabio predict` and `megabio evaluate`: flags onto FinetuneConfig and the recipes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from megabio.cli.common import (
    add_precision_flags,
    command_group,
    field_help,
    first_rank_log,
    parallel_state,
    print_memory_report,
)
from megabio.finetune.config import DEFAULT_FC_DROPOUT, FinetuneConfig, SpanSettings

# Flags shared by every fine-tuning recipe, with FinetuneConfig's defaults.
_SHARED = ("epochs", "lr", "micro_batch_size", "global_batch_size", "seq_length", "weight_decay",
           "lr_warmup_fraction", "clip_grad", "seed", "num_fc_layers", "fc_hidden_size", "fc_dropout",
           "log_interval")
_TYPES = {"global_batch_size": int, "fc_hidden_size": int, "fc_dropout": float}


def _add_finetune_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a megabio checkpoint, a transformers BERT / MegatronBert directory, or a converted "
                             "Megatron-LM checkpoint")
    parser.add_argument("--train", required=True, metavar="FILE")
    parser.add_argument("--dev", required=True, metavar="FILE")
    parser.add_argument("--test", metavar="FILE", help="scored at the end (else the dev set is)")
    parser.add_argument("--output-dir", required=True, metavar="DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    parser.add_argument("--vocab-file", help="checked against the checkpoint's vocabulary")
    parser.add_argument("--tensor-model-parallel-size", type=int, default=1, metavar="N")
    defaults, docs = FinetuneConfig(), field_help(FinetuneConfig)
    for name in _SHARED:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=_TYPES.get(name, type(value)), default=value,
                            help=docs[name])
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=defaults.group_by_length,
                        help="batch examples of similar length together (faster; the default) or at random")
    parser.set_defaults(fc_dropout=DEFAULT_FC_DROPOUT[kind])  # the task's, so --dry-run prints it
    add_precision_flags(parser)
    parser.add_argument("--tensorboard-dir")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, parallel layout and memory per rank, then exit")
    parser.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")),
                        help="processes in the job, for --dry-run (default: $WORLD_SIZE or 1)")


def finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(**{name: getattr(args, name)
                             for name in (*_SHARED, "group_by_length", "precision", "tensorboard_dir")})


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    tasks = command_group(subparsers, "finetune", "fine-tune an encoder on a task (under torchrun for TP/DP)", "TASK")
    ner = tasks.add_parser(
        "ner", help="named-entity recognition on IOB files, scored with conlleval entity-level F1",
        description="Fine-tune a token classifier on IOB / CoNLL files (token<TAB>tag, blank line between "
                    "sentences), keep the model of the best dev F1, and write metrics.json, predictions.conll, "
                    "labels.json and the model into --output-dir.")
    _add_finetune_arguments(ner, "token")
    ner.add_argument("--labeling", choices=("subtoken", "wholeword"), default="subtoken",
                     help="subtoken: the first piece of a word carries its tag; wholeword: every piece does")
    ner.set_defaults(handler=_finetune_ner)
    relation = tasks.add_parser(
        "re", help="relation extraction (sentence classification), scored with micro-F1 over positive classes",
        description="Fine-tune a sentence classifier on TSV files (sentence<TAB>label or id<TAB>sentence<TAB>label, "
                    "header optional), keep the model of the best dev micro-F1, and write metrics.json, "
                    "predictions.tsv, labels.json and the model into --output-dir.")
    _add_finetune_arguments(relation, "sequence")
    _add_negative_label(relation)
    relation.add_argument("--entity-markers", action="store_true",
                          help="wrap the two entity placeholders in << >> and [[ ]] and classify on the markers")
    relation.set_defaults(handler=_finetune_re)
    qa = tasks.add_parser(
        "qa", help="question answering (SQuAD-style span extraction; BioASQ factoid with --golden)",
        description="Fine-tune span extraction on SQuAD v1.1 JSON, keep the model of the best dev F1, and write "
                    "nbest.json, predictions.json, metrics.json, labels.json and the model into --output-dir; "
                    "with --golden, also the pooled BioASQ submission and its scores.")
    _add_finetune_arguments(qa, "span")
    _add_bioasq_arguments(qa)
    span_docs = field_help(SpanSettings)
    for name, value in SpanSettings().__dict__.items():
        qa.add_argument(f"--{name.replace('_', '-')}", type=int, default=value, help=span_docs[name])
    qa.set_defaults(handler=_finetune_qa, lr=3e-5, seq_length=384)

    predict_tasks = command_group(subparsers, "predict", "apply a fine-tuned model", "TASK")
    predict_ner = predict_tasks.add_parser("ner", help="tag raw text (a sentence per line) or CoNLL",
                                           description="Print CoNLL lines: token<TAB>tag (token gold predicted "
                                                       "when the input carries tags).")
    predict_ner.add_argument("--model", required=True, metavar="DIR", help="a `megabio finetune ner` output")
    predict_ner.add_argument("--input", required=True, metavar="FILE")
    predict_ner.add_argument("--input-format", choices=("auto", "conll", "text"), default="auto")
    predict_ner.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    predict_ner.set_defaults(handler=_predict_ner)
    predict_re = predict_tasks.add_parser("re", help="classify the sentences of a TSV (labels optional)",
                                          description="Print id<TAB>gold<TAB>predicted per sentence.")
    predict_re.add_argument("--model", required=True, metavar="DIR", help="a `megabio finetune re` output")
    predict_re.add_argument("--input", required=True, metavar="FILE")
    predict_re.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    predict_re.set_defaults(handler=_predict_re)
    predict_qa = predict_tasks.add_parser(
        "qa", help="answer the questions of a SQuAD JSON file (answers optional)",
        description="Answer with the window and n-best settings the model was trained with; write nbest.json, "
                    "predictions.json and metrics.json (SQuAD EM / F1 where the file has answers) into "
                    "--output-dir, with --bioasq or --golden also the pooled BioASQ submission (and its scores).")
    predict_qa.add_argument("--model", required=True, metavar="DIR", help="a `megabio finetune qa` output")
    predict_qa.add_argument("--input", required=True, metavar="FILE", help="SQuAD v1.1 JSON")
    predict_qa.add_argument("--output-dir", required=True, metavar="DIR")
    _add_bioasq_arguments(predict_qa)
    predict_qa.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    predict_qa.set_defaults(handler=_predict_qa)

    evaluate_tasks = command_group(subparsers, "evaluate", "score predictions against gold", "TASK")
    evaluate_ner = evaluate_tasks.add_parser("ner", help="conlleval entity-level precision, recall and F1 (JSON)")
    evaluate_ner.add_argument("--gold", required=True, metavar="FILE", help="CoNLL; the last column is the tag")
    evaluate_ner.add_argument("--pred", required=True, metavar="FILE", help="CoNLL; the last column is the tag")
    evaluate_ner.set_defaults(handler=_evaluate_ner)
    evaluate_re = evaluate_tasks.add_parser("re", help="micro precision, recall and F1 over the positive classes, "
                                                       "and per class (JSON)")
    evaluate_re.add_argument("--gold", required=True, metavar="FILE", help="relation TSV with labels")
    evaluate_re.add_argument("--pred", required=True, metavar="FILE",
                             help="predictions TSV (id ... predicted), as `finetune re` / `predict re` write it")
    _add_negative_label(evaluate_re)
    evaluate_re.set_defaults(handler=_evaluate_re)
    evaluate_squad = evaluate_tasks.add_parser("squad", help="SQuAD v1.1 exact match and F1 (JSON)")
    evaluate_squad.add_argument("--gold", required=True, metavar="FILE", help="SQuAD JSON with answers")
    evaluate_squad.add_argument("--pred", required=True, metavar="FILE", help="predictions.json: id -> answer")
    evaluate_squad.set_defaults(handler=_evaluate_squad)
    evaluate_bioasq = evaluate_tasks.add_parser("bioasq", help="BioASQ factoid strict / lenient accuracy and MRR")
    evaluate_bioasq.add_argument("--gold", required=True, nargs="+", metavar="FILE",
                                 help="BioASQ golden JSON; one file per test batch reports each batch and the "
                                      "mean over them (the convention of BioBERT's and BioMegatron's tables)")
    evaluate_bioasq.add_argument("--pred", required=True, metavar="FILE", help="BioASQ submission JSON")
    evaluate_bioasq.set_defaults(handler=_evaluate_bioasq)


def _add_negative_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--negative-label", default="false",
                        help="the class left out of precision and recall (`none`: every class counts)")


def _negative(args: argparse.Namespace) -> str | None:
    return None if args.negative_label.lower() == "none" else args.negative_label


def _dry_run(args: argparse.Namespace) -> int:
    """What the fine-tuning job would be: its config, the TP x DP layout and the memory per rank."""
    from megabio.convert import pretrained_config
    from megabio.sizing import model_report

    model, _ = pretrained_config(args.checkpoint)
    tp = args.tensor_model_parallel_size
    if args.world_size % tp:
        raise ValueError(f"--world-size {args.world_size} is not divisible by --tensor-model-parallel-size {tp}")
    config = finetune_config(args)
    dp = args.world_size // tp
    report = model_report(model, tp, micro_batch_size=config.micro_batch_size, seq_length=config.seq_length,
                          precision=config.precision, data_parallel_size=dp)
    print(json.dumps({"model": model.to_dict(), "finetune": config.to_dict()}, indent=2))
    print(f"layout: world {args.world_size} = TP {tp} x DP {dp}; global batch {config.global_batch(dp)}")
    print_memory_report(model, report, tp, config.precision, config.micro_batch_size)
    return 0


def _finetune_re(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from megabio.finetune.recipe import TaskFiles
    from megabio.finetune.relation import finetune_relations

    state = parallel_state(args.tensor_model_parallel_size)
    metrics = finetune_relations(args.checkpoint, TaskFiles(args.train, args.dev, args.test), args.output_dir,
                                 finetune_config(args), _negative(args), args.entity_markers, state,
                                 vocab_file=args.vocab_file, overwrite=args.overwrite, log=first_rank_log(state))
    if state.tp_rank == 0 and state.dp_rank == 0:
        print(json.dumps({k: metrics[k] for k in ("precision", "recall", "micro_f1", "evaluated_on")}))
    return 0


def _predict_re(args: argparse.Namespace) -> int:
    from megabio.finetune.relation import predict_relations

    _write_output(predict_relations(args.model, args.input), args.output)
    return 0


def _evaluate_re(args: argparse.Namespace) -> int:
    from megabio.finetune.relation import evaluate_relations

    print(json.dumps(evaluate_relations(args.gold, args.pred, _negative(args)), indent=2))
    return 0


def _add_bioasq_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--golden", nargs="+", default=[], metavar="FILE",
                        help="BioASQ golden JSON: score the pooled factoid submission; one file per test batch "
                             "(e.g. 7B1_golden.json ... 7B5_golden.json) reports each batch and their mean")
    parser.add_argument("--bioasq", action="store_true",
                        help="also write bioasq_submission.json, the n-best of each question's snippets (ids "
                             "<question>_<nnn>) pooled, without a golden file to score it (--golden implies it)")


def _finetune_qa(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from megabio.finetune.qa import finetune_qa
    from megabio.finetune.recipe import TaskFiles

    state = parallel_state(args.tensor_model_parallel_size)
    settings = SpanSettings(**{name: getattr(args, name) for name in SpanSettings().__dict__})
    metrics = finetune_qa(args.checkpoint, TaskFiles(args.train, args.dev, args.test), args.output_dir,
                          finetune_config(args), settings, args.golden, args.bioasq, state, vocab_file=args.vocab_file,
                          overwrite=args.overwrite, log=first_rank_log(state))
    if state.tp_rank == 0 and state.dp_rank == 0:
        print(json.dumps({k: metrics[k] for k in ("exact_match", "f1", "bioasq", "evaluated_on") if k in metrics}))
    return 0


def _predict_qa(args: argparse.Namespace) -> int:
    from megabio.finetune.qa import predict_qa

    metrics = predict_qa(args.model, args.input, args.output_dir, args.golden, args.bioasq, args.overwrite,
                         log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(metrics))
    return 0


def _evaluate_squad(args: argparse.Namespace) -> int:
    from megabio.finetune.qa_data import read_squad
    from megabio.finetune.squad_metrics import read_predictions, squad_scores

    gold = {q.id: [text for text, _ in q.answers] for q in read_squad(args.gold)}
    print(json.dumps(squad_scores(gold, read_predictions(args.pred)), indent=2))
    return 0


def _evaluate_bioasq(args: argparse.Namespace) -> int:
    from megabio.finetune.bioasq import load_golden, read_submission, scores_over_batches

    print(json.dumps(scores_over_batches(load_golden(args.gold), read_submission(args.pred)), indent=2))
    return 0


def _finetune_ner(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from megabio.finetune.ner import finetune_ner
    from megabio.finetune.recipe import TaskFiles

    config = finetune_config(args)
    state = parallel_state(args.tensor_model_parallel_size)
    metrics = finetune_ner(args.checkpoint, TaskFiles(args.train, args.dev, args.test), args.output_dir, config,
                           args.labeling, state, vocab_file=args.vocab_file, overwrite=args.overwrite,
                           log=first_rank_log(state))
    if state.tp_rank == 0 and state.dp_rank == 0:
        print(json.dumps({k: metrics[k] for k in ("precision", "recall", "f1", "evaluated_on")}))
    return 0


def _write_output(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from megabio.io.atomic import atomic_write_text

    atomic_write_text(Path(output), text)


def _predict_ner(args: argparse.Namespace) -> int:
    from megabio.finetune.ner import predict_ner

    _write_output(predict_ner(args.model, args.input, args.input_format), args.output)
    return 0


def _evaluate_ner(args: argparse.Namespace) -> int:
    from megabio.finetune.ner import evaluate_ner

    print(json.dumps(evaluate_ner(args.gold, args.pred), indent=2))
    return 0
