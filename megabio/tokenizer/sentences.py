"""Sentence splitting with nltk's Punkt, trained on the corpus itself (punkt data cannot be downloaded
everywhere) and taught the abbreviations of biomedical writing, which must never end a sentence."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from nltk.tokenize import punkt
from nltk.tokenize.punkt import (
    PunktLanguageVars,
    PunktParameters,
    PunktSentenceTokenizer,
    PunktToken,
    PunktTokenizer,
    PunktTrainer,
)

from megabio.io.atomic import atomic_write_text

# Punkt stores abbreviations lower-cased, without the final period; "et al." is the token "al".
SHIPPED_PARAMS = Path(__file__).with_name("punkt_biomedical.json.gz")
"""Punkt parameters learned from PubMed abstracts and PMC full text; rebuilt by tools/build_punkt_model.sh."""

BIOMEDICAL_ABBREVIATIONS = frozenset({
    "al", "e.g", "i.e", "cf", "vs", "viz", "approx", "ca", "etc", "fig", "figs", "tab", "eq", "eqs", "ref", "refs",
    "no", "nos", "vol", "suppl", "resp", "i.v", "i.p", "i.m", "i.c.v", "s.c", "p.o", "b.i.d", "t.i.d", "q.i.d",
    "q.d", "sp", "spp", "subsp", "var", "dr", "prof", "mr", "mrs", "ms", "inc", "ltd", "co", "corp", "dept",
    "univ", "st", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "min", "max", "hr", "hrs", "wk", "wks", "yr", "yrs", "mo", "mos", "u.s", "u.k", "a.m", "p.m",
})


def _stdlib(pattern) -> re.Pattern:
    """nltk's pattern compiled by the standard `re`. nltk 3.9+ compiles its fixed Punkt patterns with the
    `regex` engine under a per-match timeout (a guard meant for caller-supplied patterns), which makes
    splitting about twice as slow; the patterns and their matches are the same."""
    known = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.UNICODE
    return re.compile(pattern.pattern, pattern.flags & known)


class _StdlibToken(PunktToken):
    _RE_ELLIPSIS = _stdlib(PunktToken._RE_ELLIPSIS)
    _RE_NUMERIC = _stdlib(PunktToken._RE_NUMERIC)
    _RE_INITIAL = _stdlib(PunktToken._RE_INITIAL)
    _RE_ALPHA = _stdlib(PunktToken._RE_ALPHA)
    _RE_NON_PUNCT = _stdlib(punkt._re_non_punct)

    @property
    def is_non_punct(self):
        return self._RE_NON_PUNCT.search(self.type)


class _StdlibLanguageVars(PunktLanguageVars):
    re_boundary_realignment = _stdlib(PunktLanguageVars.re_boundary_realignment)

    @functools.cached_property
    def _word_pattern(self) -> re.Pattern:
        return _stdlib(super()._word_tokenizer_re())

    @functools.cached_property
    def _period_pattern(self) -> re.Pattern:
        return _stdlib(super().period_context_re())

    def _word_tokenizer_re(self) -> re.Pattern:
        return self._word_pattern

    def period_context_re(self) -> re.Pattern:
        return self._period_pattern


class SentenceSplitter:
    """`split(text)` -> sentences, with Punkt parameters learned from a corpus or loaded from JSON."""

    def __init__(self, params: PunktParameters) -> None:
        params.abbrev_types.update(BIOMEDICAL_ABBREVIATIONS)
        self._tokenizer = PunktSentenceTokenizer(params, lang_vars=_StdlibLanguageVars(), token_cls=_StdlibToken)

    def split(self, text: str) -> list[str]:
        return [text[a:b].strip() for a, b in self.spans(text) if text[a:b].strip()]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each sentence of `text`."""
        spans: list[tuple[int, int]] = []
        for start, end in self._tokenizer.span_tokenize(text):
            if spans and self._is_continuation(text[spans[-1][0]:spans[-1][1]], text[start:end]):
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        return spans

    @staticmethod
    def _is_continuation(previous: str, following: str) -> bool:
        """Punkt judges a period by a window that includes the next token, so "et al. 1998]." can split
        after "al."; a piece after a known abbreviation that does not start upper-case continues the sentence."""
        words = previous.split()
        if not words or not following:
            return False
        last = words[-1].lstrip("([").lower()
        return last.endswith(".") and last[:-1] in BIOMEDICAL_ABBREVIATIONS and not following[0].isupper()

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentenceSplitter:
        return cls(load_params(path))

    @classmethod
    def shipped(cls) -> SentenceSplitter:
        """The Punkt model megabio ships, learned from PubMed abstracts and PMC full text (see README)."""
        return cls.load(SHIPPED_PARAMS)

    @classmethod
    def default(cls) -> SentenceSplitter:
        """nltk's installed English model when there is one, else the shipped biomedical model."""
        return cls.installed() or cls.shipped()

    @classmethod
    def installed(cls, language: str = "english") -> SentenceSplitter | None:
        """The Punkt model installed with nltk's data (punkt_tab), or None where there is none."""
        try:
            return cls(PunktTokenizer(language)._params)
        except (LookupError, OSError):
            return None


def train_punkt(texts: Iterable[str]) -> PunktParameters:
    """Learn Punkt parameters (abbreviations, collocations, sentence starters) from `texts`."""
    trainer = PunktTrainer(lang_vars=_StdlibLanguageVars(), token_cls=_StdlibToken)
    trainer.INCLUDE_ALL_COLLOCS = True
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1000:  # train in pieces: memory stays flat in corpus size
            trainer.train("\n\n".join(batch), finalize=False)
            batch = []
    if batch:
        trainer.train("\n\n".join(batch), finalize=False)
    trainer.finalize_training()
    params = trainer.get_params()
    params.abbrev_types.update(BIOMEDICAL_ABBREVIATIONS)
    return params


def save_params(params: PunktParameters, path: str | os.PathLike) -> None:
    """Plain JSON (never a pickle), written to a temporary file and renamed."""
    data = {
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted(list(pair) for pair in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": dict(sorted(params.ortho_context.items())),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data))


def load_params(path: str | os.PathLike) -> PunktParameters:
    """Punkt parameters from JSON written by `save_params` (gzip-compressed when the name ends in .gz)."""
    try:
        raw = Path(path).read_bytes()
        data = json.loads(gzip.decompress(raw) if str(path).endswith(".gz") else raw)
        params = PunktParameters()
        params.abbrev_types = set(data["abbrev_types"])
        params.collocations = {tuple(pair) for pair in data["collocations"]}
        params.sent_starters = set(data["sent_starters"])
        for word, flags in data["ortho_context"].items():
            params.ortho_context[word] = int(flags)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a Punkt parameter file written by `megabio splitter train` ({error})") \
            from None
    return params
