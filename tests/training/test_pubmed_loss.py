"""On real PubMed text the tiny model's MLM loss falls by at least 30% in 200 steps."""

from __future__ import annotations

from megabio.config import ModelConfig
from megabio.data.bert_dataset import BertDataset, BertSampleSettings
from megabio.data.preprocess import PreprocessSettings, preprocess
from megabio.io.corpus import read_documents, read_id_list
from megabio.io.vocab import read_vocab
from megabio.parallel import ParallelState
from megabio.tokenizer.sentences import save_params, train_punkt
from megabio.training.config import TrainConfig
from megabio.training.loop import pretrain
from tests.shared_data import shared_data


def test_mlm_loss_falls_on_pubmed(tmp_path):
    corpus = [shared_data("pretrain/CHR-pubmed-abstracts")]
    exclude = read_id_list(shared_data("pretrain/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt"))
    vocab_file = str(shared_data("vocab/bert-base-cased-vocab.txt"))
    save_params(train_punkt(d.text for d in read_documents(corpus, exclude_ids=exclude)), tmp_path / "punkt.json")
    prefix = preprocess(corpus, str(tmp_path / "chr"), PreprocessSettings(
        vocab_file=vocab_file, split_sentences=True, punkt_file=str(tmp_path / "punkt.json")),
        exclude_ids=exclude, show_progress=False)["output_prefix"]
    vocab = read_vocab(vocab_file)
    data = BertDataset(prefix, vocab, BertSampleSettings(max_seq_length=64, binary_head="none"))
    model = ModelConfig.from_preset("tiny", vocab_size=len(vocab), binary_head="none")  # the loss is MLM alone
    config = TrainConfig(micro_batch_size=16, global_batch_size=16, seq_length=64, train_iters=200, lr=1e-2,
                         lr_warmup_fraction=0.05, log_interval=1000)
    history = pretrain(model, config, data, ParallelState.single(), log=lambda _: None).history
    first = history[0]["loss"]  # the untrained model's loss
    last = sum(r["loss"] for r in history[-10:]) / 10  # smoothed over the last 10 steps
    assert last <= 0.7 * first, f"MLM loss {first:.2f} -> {last:.2f}"
