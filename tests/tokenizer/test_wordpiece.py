"""load_wordpiece and encode_ids against transformers' BertTokenizer: the same ids, special tokens kept whole,
[CLS] ... [SEP] added on request, and a clear error for a file that is not a BERT vocabulary."""

from __future__ import annotations

import pytest
from transformers import BertTokenizer

from megabio.tokenizer.wordpiece import encode_ids, load_wordpiece

TEXTS = ["Cisplatin-induced nephrotoxicity in Sprague-Dawley rats (n = 12).",
         "The [MASK] was given i.v.; Na+/K+-ATPase fell by 35%.",
         "Ünïcödé àccents, Greek α-synuclein and 中文 characters.",
         "",
         "A verylongwordthatisnotinthevocabularyatallbutstillgetssplitintopieces here."]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "was", "given", "in", "rats", "a", "and",
             "cis", "##platin", "-", "induced", "(", ")", "n", "=", "1", "##2", ".", ",", ";", "%", "+", "/", "3",
             "##5", "i", "v", "na", "k", "at", "##pase", "fell", "by", "greek", "α", "syn", "##uc", "##lein",
             "中", "文", "characters", "here", "un", "##ic", "##ode", "accents", "very", "##long", "##word"]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("lower_case", [True, False])
def test_ids_equal_bert_tokenizer(vocab_file, lower_case):
    reference = BertTokenizer(vocab_file, do_lower_case=lower_case)
    tokenizer = load_wordpiece(vocab_file, lower_case)
    expected = [reference.encode(t, add_special_tokens=False) for t in TEXTS]
    assert encode_ids(tokenizer, TEXTS) == expected
    assert [e.ids for e in tokenizer.encode_batch(TEXTS, add_special_tokens=False)] == expected
    assert tokenizer.encode(TEXTS[0]).ids == reference.encode(TEXTS[0])  # [CLS] ... [SEP]
    assert reference.mask_token_id in expected[1]  # "[MASK]" in text stays one token


def test_not_a_bert_vocabulary(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nthe\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt: not a BERT WordPiece vocabulary \(no \[CLS\]"):
        load_wordpiece(path, lower_case=True)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        load_wordpiece(tmp_path / "missing.txt", lower_case=True)
