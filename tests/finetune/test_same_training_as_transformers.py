"""Fine-tuning on the engine is transformers' training, step for step: from the same BERT checkpoint (dropout
off, so no random masks differ) and the same head weights, megabio's task models trained by the engine and
transformers' task models trained by the plain loop of its examples (AdamW without decay on biases and
LayerNorms, `get_linear_schedule_with_warmup`, gradient clipping at 1.0) give the same loss at every step and
the same weights at the end; with dropout on, their gradients over many dropout draws have the same mean and
spread. Batches carry padding; transformers' span loss is taken over each window's own positions, as
megabio's is (its `BertForQuestionAnswering` loss also takes the padded positions into the softmax). What is
left between the two in a real run is the random draws alone: head initialisation, dropout masks and batch
order."""

from __future__ import annotations

import pytest
import torch

from megabio.convert import convert
from megabio.finetune.checkpoints import task_model_from_pretrained
from megabio.finetune.config import FinetuneConfig
from megabio.finetune.recipe import ModelLoss
from megabio.model.task_models import HeadConfig, mask_padded_positions, span_loss
from megabio.parallel import ParallelState
from megabio.training.engine import Engine
from tests.convert.test_hf import SHAPE, save_hf

transformers = pytest.importorskip("transformers")

STEPS, BATCH, LENGTH, NUM_LABELS = 10, 4, 24, 3
CONFIG = FinetuneConfig(lr=1e-3, micro_batch_size=BATCH, seq_length=LENGTH, lr_warmup_fraction=0.2, fc_dropout=0.0)
TASKS = {  # megabio kind: (transformers class, its head's module name, labels, megabio's loss inputs)
    "span": ("BertForQuestionAnswering", "qa_outputs", 2, ("start_positions", "end_positions")),
    "token": ("BertForTokenClassification", "classifier", NUM_LABELS, ("labels",)),
    "sequence": ("BertForSequenceClassification", "classifier", NUM_LABELS, ("labels",)),
}


def batches(kind: str, num_labels: int) -> list[dict[str, torch.Tensor]]:
    """Random batches with padding (labels and answers inside each example's own length)."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        ids = torch.randint(5, SHAPE["vocab_size"], (BATCH, LENGTH), generator=generator)
        lengths = torch.randint(LENGTH // 2, LENGTH + 1, (BATCH,), generator=generator)
        mask = (torch.arange(LENGTH) < lengths[:, None]).long()
        ids.masked_fill_(mask == 0, 0)
        batch = {"input_ids": ids, "attention_mask": mask,
                 "token_type_ids": (torch.arange(LENGTH) >= LENGTH // 3).long().expand(BATCH, -1).clone()}
        if kind == "span":
            start = (LENGTH // 3 + torch.rand(BATCH, generator=generator) * (lengths - 4 - LENGTH // 3)).long()
            width = torch.randint(0, 4, (BATCH,), generator=generator)
            batch.update(start_positions=start, end_positions=start + width)
            out.append(batch)
            continue
        if kind == "token":
            labels = torch.randint(0, num_labels, (BATCH, LENGTH), generator=generator)
            labels[(mask == 0) | (torch.rand(BATCH, LENGTH, generator=generator) < 0.3)] = -100
        else:
            labels = torch.randint(0, num_labels, (BATCH,), generator=generator)
        out.append({**batch, "labels": labels})
    return out


def transformers_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers' task loss; for spans, megabio's span loss on its logits with the padding masked out."""
    if not isinstance(model, transformers.BertForQuestionAnswering):
        return model(**batch).loss
    out = model(**{k: v for k, v in batch.items() if not k.endswith("_positions")})
    start, end = mask_padded_positions(out.start_logits, out.end_logits, batch["attention_mask"])
    return span_loss(start, end, batch["start_positions"], batch["end_positions"])


def transformers_losses(model: torch.nn.Module, data: list[dict[str, torch.Tensor]]) -> list[float]:
    """The plain loop of transformers' examples."""
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": CONFIG.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=CONFIG.lr)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(CONFIG.lr_warmup_fraction * STEPS), STEPS)
    model.train()
    losses = []
    for batch in data:
        loss = transformers_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CONFIG.clip_grad)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def _start_from_our_head(head: torch.nn.Linear, ours: torch.nn.Module) -> None:
    """transformers' head starts from megabio's freshly drawn one."""
    with torch.no_grad():
        head.weight.copy_(ours.head.classifier.weight)
        head.bias.copy_(ours.head.classifier.bias)


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_engine_steps_equal_the_transformers_loop(kind, tmp_path):
    class_name, head_name, num_labels, targets = TASKS[kind]
    torch.manual_seed(0)
    shape = dict(SHAPE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    save_hf(transformers.BertForPreTraining(transformers.BertConfig(**shape)), tmp_path / "hf")
    convert("hf-bert", "megabio", tmp_path / "hf", tmp_path / "megabio")

    ours, _, _ = task_model_from_pretrained(kind, tmp_path / "megabio", HeadConfig(num_labels, fc_dropout=0.0),
                                            ParallelState.single(), seed=3)
    theirs = getattr(transformers, class_name).from_pretrained(tmp_path / "hf", num_labels=num_labels)
    _start_from_our_head(getattr(theirs, head_name), ours)

    data = batches(kind, num_labels)
    vocab = SHAPE["vocab_size"]  # megabio pads the embedding rows past it
    start = ours.bert.embeddings.word_embeddings.weight.detach()[:vocab].clone()
    engine = Engine(ours, ModelLoss("input_ids", "attention_mask", "token_type_ids", *targets),
                    CONFIG.train_config(STEPS, 1), ParallelState.single(), torch.device("cpu"))
    megabio_losses = [engine.train_step([batch], step).loss for step, batch in enumerate(data)]

    assert megabio_losses == pytest.approx(transformers_losses(theirs, data), rel=1e-4)
    embeddings = ours.bert.embeddings.word_embeddings.weight.detach()[:vocab]
    assert (embeddings - start).abs().max() > 1e-3  # the steps moved the encoder ...
    assert torch.allclose(embeddings, theirs.bert.embeddings.word_embeddings.weight, atol=1e-5)  # ... alike
    assert torch.allclose(ours.head.classifier.weight, getattr(theirs, head_name).weight, atol=1e-5)


def _gradient_draws(model: torch.nn.Module, loss, parameters: list[torch.Tensor], draws: int) -> torch.Tensor:
    """`[draws, n]`: the gradient of `loss()` w.r.t. `parameters` (flattened), once per dropout draw."""
    model.train()
    out = []
    for _ in range(draws):
        model.zero_grad()
        loss().backward()
        out.append(torch.cat([p.grad.flatten() for p in parameters]))
    return torch.stack(out)


def _mean_gap_in_noise_units(a: torch.Tensor, b: torch.Tensor) -> float:
    """|mean(a) - mean(b)| over the noise the two means carry: about 1 when both draw from one distribution."""
    noise = (a.var(0) / len(a) + b.var(0) / len(b)).sum()
    return float(((a.mean(0) - b.mean(0)).norm() ** 2 / noise).sqrt())


def test_dropout_gradients_follow_transformers_in_distribution(tmp_path):
    """With dropout on, a step's gradient is random: over many draws, megabio's span model and transformers'
    give gradients of the same mean and the same spread (dropout at the same places, rates and scaling),
    and the spread tells apart a transformers model whose hidden dropout is 0.15 (the check can fail)."""
    torch.manual_seed(0)
    save_hf(transformers.BertForPreTraining(transformers.BertConfig(**SHAPE)), tmp_path / "hf")
    convert("hf-bert", "megabio", tmp_path / "hf", tmp_path / "megabio")
    ours, _, _ = task_model_from_pretrained("span", tmp_path / "megabio", HeadConfig(2, fc_dropout=0.0),
                                            ParallelState.single(), seed=3)
    batch = batches("span", 2)[0]
    draws = 200
    real_rows = ours.head.classifier.weight.numel() + SHAPE["vocab_size"] * SHAPE["hidden_size"]

    def transformers_draws(**dropout) -> torch.Tensor:
        theirs = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "hf", **dropout)
        _start_from_our_head(theirs.qa_outputs, ours)
        return _gradient_draws(theirs, lambda: transformers_loss(theirs, batch),
                               [theirs.qa_outputs.weight, theirs.bert.embeddings.word_embeddings.weight], draws)

    torch.manual_seed(1)
    megabio_draws = _gradient_draws(
        ours, lambda: ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                           batch["start_positions"], batch["end_positions"])[0],
        [ours.head.classifier.weight, ours.bert.embeddings.word_embeddings.weight], draws)
    megabio_draws = megabio_draws[:, :real_rows]  # megabio pads the embedding rows past the vocabulary
    same, other_rate = transformers_draws(), transformers_draws(hidden_dropout_prob=0.15)
    assert _mean_gap_in_noise_units(megabio_draws, same) < 1.3
    assert float(megabio_draws.var(0).sum() / same.var(0).sum()) == pytest.approx(1.0, abs=0.1)
    assert abs(float(megabio_draws.var(0).sum() / other_rate.var(0).sum()) - 1.0) > 0.2
