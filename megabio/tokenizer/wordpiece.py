"""BERT WordPiece tokenization with HF `tokenizers`, identical to transformers' BertTokenizer."""

from __future__ import annotations

import os

from tokenizers import BertWordPieceTokenizer
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION_PREFIX = "##"


def bert_normalizer(lower_case: bool) -> BertNormalizer:
    """BERT's text cleaning; lower-casing also strips accents, as in the uncased models."""
    return BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower_case)


def bert_pre_tokenizer() -> BertPreTokenizer:
    """BERT's split on whitespace and punctuation."""
    return BertPreTokenizer()


def load_wordpiece(vocab_file: str | os.PathLike, lower_case: bool) -> BertWordPieceTokenizer:
    """A fast WordPiece tokenizer for `vocab_file` (one token per line)."""
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"{vocab_file}: vocabulary file not found")
    try:
        return BertWordPieceTokenizer(str(vocab_file), lowercase=lower_case, strip_accents=None, clean_text=True,
                                      handle_chinese_chars=True, wordpieces_prefix=CONTINUATION_PREFIX)
    except Exception as error:  # tokenizers raises TypeError or its own exception types
        raise ValueError(f"{vocab_file}: not a BERT WordPiece vocabulary ({error})") from None
