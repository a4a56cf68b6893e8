"""`megabio vocab`, `megabio preprocess` and `megabio splitter`: corpus-side commands."""

from __future__ import annotations

import argparse
import json
import sys

from megabio.cli.common import command_group


def _add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """--input, --json-keys and --exclude-pmids, shared by every command that reads a corpus."""
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="plain text, JSON lines, PubTator, PubMed XML or gzip files, or directories of them")
    parser.add_argument("--json-keys", default="text", help="field holding the text in JSON lines")
    parser.add_argument("--exclude-pmids", metavar="FILE", help="PMIDs (first field per line) to leave out")


def _excluded_ids(args: argparse.Namespace) -> set[str] | None:
    from megabio.io.corpus import read_id_list

    return read_id_list(args.exclude_pmids) if args.exclude_pmids else None


def add_vocab(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "vocab", "build a WordPiece vocabulary with SentencePiece; measure one")

    build = commands.add_parser(
        "build", help="train SentencePiece on a corpus and write a BERT vocab.txt",
        description="Train SentencePiece (unigram or BPE) on plain text, JSON lines, PubTator or gzip files "
                    "(or directories of them) and convert it to a BERT WordPiece vocab.txt of exactly "
                    "--vocab-size entries, with the SentencePiece model and a JSON card.")
    _add_corpus_arguments(build)
    build.add_argument("--vocab-size", type=int, default=30000)
    build.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    case = build.add_mutually_exclusive_group()
    case.add_argument("--cased", dest="lower_case", action="store_false", help="keep case (default)")
    case.add_argument("--uncased", dest="lower_case", action="store_true", help="lower-case and strip accents")
    build.add_argument("--sample-sentences", type=int, default=2_000_000,
                       help="lines SentencePiece samples from a larger corpus")
    build.add_argument("--output-dir", required=True)
    build.add_argument("--overwrite", action="store_true")
    build.set_defaults(handler=_vocab_build, lower_case=False)

    stats = commands.add_parser(
        "stats", help="sub-tokens per word (all and named-entity words), [UNK] rate, most fragmented words",
        description="Print JSON statistics of a vocabulary on IOB files (word<TAB>tag per line).")
    stats.add_argument("--vocab", required=True)
    stats.add_argument("--lower-case", action="store_true")
    stats.add_argument("--iob", nargs="+", required=True, metavar="FILE")
    stats.add_argument("--top", type=int, default=20, help="how many fragmented entity words to list")
    stats.set_defaults(handler=_vocab_stats)


def _vocab_build(args: argparse.Namespace) -> int:
    from megabio.tokenizer.vocab_builder import VocabSettings, build_vocab

    settings = VocabSettings(vocab_size=args.vocab_size, model_type=args.model_type, lower_case=args.lower_case,
                             sample_sentences=args.sample_sentences, json_key=args.json_keys)
    build_vocab(args.input, args.output_dir, settings, exclude_ids=_excluded_ids(args), overwrite=args.overwrite)
    return 0


def _vocab_stats(args: argparse.Namespace) -> int:
    from megabio.tokenizer.vocab_stats import vocab_stats

    print(json.dumps(vocab_stats(args.vocab, args.iob, lower_case=args.lower_case, top=args.top), indent=2))
    return 0


def add_data(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "data", "build task data sets from their original corpora")
    chemprot = commands.add_parser(
        "chemprot", help="the BLUE / BioBERT sentence-level ChemProt set from the BioCreative VI corpus",
        description="Split the abstracts into sentences, make every chemical-gene pair in a sentence an "
                    "instance labelled CPR:3/4/5/6/9 or false, mask the pair as @CHEMICAL$ / @GENE$, and write "
                    "train.tsv, dev.tsv and test.tsv (id<TAB>sentence<TAB>label).")
    chemprot.add_argument("--corpus", required=True, metavar="DIR",
                          help="the corpus folder (chemprot_{training,development,test}_* files or sub-folders)")
    chemprot.add_argument("--output", required=True, metavar="DIR")
    chemprot.add_argument("--overwrite", action="store_true")
    chemprot.set_defaults(handler=_data_chemprot)
    bioasq = commands.add_parser(
        "bioasq", help="BioASQ factoid questions (training set, test batch or golden file) as SQuAD JSON",
        description="Write the factoid questions of BioASQ JSON files as one SQuAD v1.1 file for `finetune qa` "
                    "and `predict qa`: one question per snippet, ids <question id>_<nnn>. With --with-answers "
                    "each snippet's answer is the earliest occurrence (case-insensitive) of an exact_answer "
                    "synonym and snippets without one are left out; without it every snippet is kept, "
                    "unanswered (a test batch).")
    bioasq.add_argument("--input", required=True, nargs="+", metavar="FILE", help="BioASQ JSON ({\"questions\": ...})")
    bioasq.add_argument("--output", required=True, metavar="FILE")
    bioasq.add_argument("--with-answers", action="store_true",
                        help="a training set: mark the exact answer in each snippet (needs exact_answer)")
    bioasq.add_argument("--overwrite", action="store_true")
    bioasq.set_defaults(handler=_data_bioasq)


def _data_chemprot(args: argparse.Namespace) -> int:
    from megabio.data.chemprot import build_chemprot

    print(json.dumps(build_chemprot(args.corpus, args.output, args.overwrite), indent=2))
    return 0


def _data_bioasq(args: argparse.Namespace) -> int:
    from megabio.data.bioasq import build_bioasq

    print(json.dumps(build_bioasq(args.input, args.output, args.with_answers, args.overwrite), indent=2))
    return 0


def add_preprocess(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="text to a Megatron-compatible indexed dataset (.bin/.idx)",
        description="Read plain text, JSON lines, PubTator, PubMed XML or gzip files, optionally split "
                    "sentences (in --workers processes), WordPiece-tokenize (on the tokenizer's threads, all "
                    "cores unless RAYON_NUM_THREADS limits them) and write <prefix>_<key>_sentence.bin/.idx "
                    "(or _document with whole documents).")
    _add_corpus_arguments(parser)
    parser.add_argument("--vocab", "--vocab-file", dest="vocab", required=True, help="WordPiece vocab.txt")
    parser.add_argument("--lower-case", action="store_true")
    parser.add_argument("--split-sentences", action="store_true")
    parser.add_argument("--punkt", help="Punkt parameters from `megabio splitter train`")
    parser.add_argument("--output-prefix", required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes splitting sentences")
    parser.set_defaults(handler=_preprocess)

    commands = command_group(subparsers, "splitter", "sentence splitter (Punkt) commands")
    train = commands.add_parser("train", help="learn Punkt parameters from a corpus",
                                description="Learn Punkt sentence-splitting parameters from the corpus and save "
                                            "them as JSON; biomedical abbreviations (i.v., et al., Fig., vs., "
                                            "e.g.) are always added.")
    _add_corpus_arguments(train)
    train.add_argument("--output", required=True, help="punkt.json to write")
    train.set_defaults(handler=_splitter_train)


def _preprocess(args: argparse.Namespace) -> int:
    from megabio.data.preprocess import PreprocessSettings, preprocess

    settings = PreprocessSettings(vocab_file=args.vocab, lower_case=args.lower_case,
                                  split_sentences=args.split_sentences, punkt_file=args.punkt,
                                  json_key=args.json_keys, workers=args.workers)
    preprocess(args.input, args.output_prefix, settings, exclude_ids=_excluded_ids(args))
    return 0


def _splitter_train(args: argparse.Namespace) -> int:
    from megabio.io.corpus import read_documents
    from megabio.tokenizer.sentences import save_params, train_punkt

    texts = (d.text for d in read_documents(args.input, args.json_keys, _excluded_ids(args)))
    save_params(train_punkt(texts), args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


