"""Single-process behaviour of the model: padding, recomputation, dropout streams, input checks."""

from __future__ import annotations

import pytest
import torch

from megabio.kernels import scaled_masked_softmax
from megabio.model import BertForPretraining, BertModel
from megabio.model import attention as attention_module
from megabio.parallel import ParallelState, RNGStatesTracker, model_parallel_rng_tracker
from tests.helpers import VOCAB_SIZE, make_batch, tiny_config


@pytest.mark.parametrize("order", ["pre", "post"])
@pytest.mark.parametrize("backend", ["sdpa", "softmax"])
def test_padding_does_not_change_real_positions(order, backend):
    torch.manual_seed(0)
    model = BertModel(tiny_config(layernorm_order=order, attention_backend=backend)).double().eval()
    ids = torch.randint(0, VOCAB_SIZE, (2, 10))
    types = torch.zeros_like(ids)
    unpadded = model(ids, torch.ones_like(ids), types)
    padded_ids = torch.cat([ids, torch.randint(0, VOCAB_SIZE, (2, 6))], dim=1)
    mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1).long()
    padded = model(padded_ids, mask, torch.zeros_like(padded_ids))
    torch.testing.assert_close(padded[:, :10], unpadded, rtol=1e-12, atol=1e-12)


def test_attention_backends_agree():
    torch.manual_seed(0)
    sdpa = BertForPretraining(tiny_config(attention_backend="sdpa")).double()
    softmax = BertForPretraining(tiny_config(attention_backend="softmax")).double()
    softmax.load_state_dict(sdpa.state_dict())
    batch = make_batch()
    torch.testing.assert_close(sdpa(**batch)[1], softmax(**batch)[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("attention_dropout", "training", "uses_kernels"),
                         [(0.1, True, True), (0.1, False, False), (0.0, True, False)])
def test_auto_attention_uses_the_fused_kernels_on_cpu_while_dropout_is_on(attention_dropout, training,
                                                                          uses_kernels, monkeypatch):
    calls = []

    def counted(*args):
        calls.append(1)
        return scaled_masked_softmax(*args)

    monkeypatch.setattr(attention_module, "scaled_masked_softmax", counted)
    model = BertForPretraining(tiny_config(attention_dropout=attention_dropout)).train(training)
    model(**make_batch())
    assert bool(calls) == uses_kernels


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch)[0]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_recomputation_replays_dropout_exactly():
    """With dropout on, recomputed layers must draw the same masks (default and tracker streams)."""
    config = tiny_config(hidden_dropout=0.2, attention_dropout=0.2)
    batch = make_batch()
    results = []
    for recompute in (False, True):
        torch.manual_seed(7)
        model = BertForPretraining(config.replace(recompute_activations=recompute)).double()
        results.append(_loss_and_grads(model, batch))
    (loss, grads), (loss_rc, grads_rc) = results
    torch.testing.assert_close(loss_rc, loss, rtol=0, atol=0)
    for name in grads:
        torch.testing.assert_close(grads_rc[name], grads[name], rtol=1e-12, atol=1e-12, msg=name)


def test_dropout_is_active_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = BertModel(tiny_config(hidden_dropout=0.3)).double()
    ids = torch.randint(0, VOCAB_SIZE, (2, 8))
    assert not torch.allclose(model(ids), model(ids))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids), rtol=0, atol=0)


def test_same_seed_same_model_any_construction():
    torch.manual_seed(3)
    a = BertForPretraining(tiny_config())
    torch.manual_seed(3)
    b = BertForPretraining(tiny_config())
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    # The MLM decoder is the word embedding itself.
    assert "lm_head.word_embeddings" not in dict(a.named_parameters())
    assert a.lm_head.word_embeddings[0] is a.bert.embeddings.word_embeddings


def test_rng_tracker_streams():
    tracker = model_parallel_rng_tracker(42, ParallelState.single())
    other_rank = model_parallel_rng_tracker(42, ParallelState(tp_size=2, tp_rank=1))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with tracker.fork():
        first = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), before), "fork must leave the default generator alone"
    with other_rank.fork():
        assert not torch.equal(torch.rand(4), first), "TP ranks must draw different streams"
    saved = tracker.get_states()
    with tracker.fork():
        second = torch.rand(4)
    assert not torch.equal(first, second)
    tracker.set_states(saved)
    with tracker.fork():
        assert torch.equal(torch.rand(4), second)
    with pytest.raises(KeyError, match="never added"):
        with RNGStatesTracker().fork("missing"):
            pass


def test_bad_inputs_are_named():
    model = BertForPretraining(tiny_config(binary_head="none"))
    too_long = torch.zeros(1, model.config.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="sequence length 129 exceeds max_position_embeddings=128"):
        model(too_long)
    with pytest.raises(ValueError, match=r"vocab_size=1100"):
        model(torch.tensor([[1, VOCAB_SIZE]]))
    with pytest.raises(ValueError, match="binary_head='none'"):
        model(torch.tensor([[1, 2]]), binary_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3))


def test_loss_matches_plain_cross_entropy():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config()).double()
    batch = make_batch()
    loss, logits, binary = model(**batch)
    mlm = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["mlm_labels"].flatten())
    sop = torch.nn.functional.cross_entropy(binary, batch["binary_labels"])
    torch.testing.assert_close(loss, mlm + sop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("order", "backend", "recompute", "binary_head"),
                         [("pre", "softmax", False, "sop"), ("post", "sdpa", False, "sop"),
                          ("pre", "sdpa", True, "none"), ("post", "softmax", True, "nsp")])
def test_logits_at_labels_only_gives_the_same_loss_and_gradients(order, backend, recompute, binary_head):
    """The head at the labelled rows, and the last layer's queries, attention and work after it at just
    those rows and the first tokens, change neither the loss nor any gradient (padded samples included)."""
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(layernorm_order=order, attention_backend=backend,
                                           recompute_activations=recompute, binary_head=binary_head)).double()
    batch = make_batch()
    if binary_head == "none":
        del batch["binary_labels"]
    dense_loss, dense_grads = _loss_and_grads(model, batch)
    _, dense_logits, dense_binary = model(**batch)
    mlp_rows = []
    model.bert.encoder.layers[-1].mlp.register_forward_hook(lambda _m, inputs, _o: mlp_rows.append(inputs[0].shape))
    head_rows = []
    model.lm_head.register_forward_pre_hook(lambda _m, inputs: head_rows.append(inputs[0].shape[0]))
    attention, queried = model.bert.encoder.layers[-1].self_attention, []
    attend = attention._attend
    attention._attend = lambda query, *rest: queried.append(query.shape) or attend(query, *rest)
    model.zero_grad()
    loss, logits, binary = model(**batch, logits_at_labels_only=True)
    loss.backward()
    labelled = batch["mlm_labels"] != -100
    assert mlp_rows[-1][0] == int(labelled[:, 1:].sum()) + labelled.shape[0], "the last MLP ran at every position"
    assert queried[-1][2] == int(labelled[:, 1:].sum(1).max()) + 1, "the last attention queried every position"
    assert logits.shape == (int(labelled.sum()), model.config.padded_vocab_size())
    # The head ran at the labelled rows padded to a multiple of 8 (here the count itself is not one).
    assert int(labelled.sum()) % 8 and head_rows[-1] == -(-int(labelled.sum()) // 8) * 8, head_rows
    torch.testing.assert_close(logits, dense_logits[labelled], rtol=1e-12, atol=1e-12)
    if binary_head != "none":
        torch.testing.assert_close(binary, dense_binary, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, dense_loss, rtol=1e-12, atol=1e-12)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, dense_grads[name], rtol=1e-10, atol=1e-12, msg=name)
    with pytest.raises(ValueError, match="needs mlm_labels"):
        model(batch["input_ids"], logits_at_labels_only=True)


def test_binary_loss_alone():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config()).double()
    batch = make_batch()
    loss, logits, binary = model(batch["input_ids"], binary_labels=batch["binary_labels"])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(binary, batch["binary_labels"]))
    assert logits.shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("parts", [2, 3])
def test_split_heads_matches_permute_and_unbind(parts):
    """split_heads gives what `permute(3, 1, 2, 0, 4).contiguous().unbind(0)` gives, and the same gradient,
    also when one part's gradient is None (that part unused)."""
    torch.manual_seed(0)
    packed = torch.randn(5, 3, 4, parts, 6, dtype=torch.float64)
    weights = [torch.randn(3, 4, 5, 6, dtype=torch.float64) for _ in range(parts)]
    for used in (parts, parts - 1):
        got_input = packed.clone().requires_grad_()
        want_input = packed.clone().requires_grad_()
        got = attention_module.split_heads(got_input)
        want = want_input.permute(3, 1, 2, 0, 4).contiguous().unbind(0)
        assert len(got) == parts
        assert all(g.is_contiguous() and torch.equal(g, w) for g, w in zip(got, want, strict=True))
        sum((g * w).sum() for g, w in zip(got[:used], weights[:used], strict=True)).backward()
        sum((g * w).sum() for g, w in zip(want[:used], weights[:used], strict=True)).backward()
        assert torch.equal(got_input.grad, want_input.grad)
