"""TP=N (and DP x TP) runs of the whole model equal a single-process run: outputs, loss and gradients."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.distributed as dist

from megabio.config import ConfigError
from megabio.model import BertForPretraining
from megabio.parallel import (
    ParallelState,
    finalize_model_grads,
    gather_from_tensor_parallel_region,
    gather_full,
    initialize,
)
from tests.distributed import run_distributed
from tests.helpers import VOCAB_SIZE, assert_close_relative, make_batch, slice_batch, tiny_config

RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _build(config, state, dtype):
    torch.manual_seed(1234)
    return BertForPretraining(config, state).to(dtype)


def _step(model, batch, logits_at_labels_only=False):
    model.zero_grad()
    loss, logits, binary_logits = model(**batch, logits_at_labels_only=logits_at_labels_only)
    loss.backward()
    hidden = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    return loss.detach(), logits.detach(), binary_logits.detach(), hidden.detach()


def _compare_with_reference(config, state, dtype, batch, reference_batch, what, logits_at_labels_only=False):
    """Run the model sharded by `state` on `batch` and a TP=1 model on `reference_batch`; compare. With
    `logits_at_labels_only` the sharded model runs that way and the dense reference's labelled rows count."""
    rtol = RTOL[dtype]
    reference = _build(config, ParallelState.single(), dtype)
    ref_loss, ref_logits, ref_binary, ref_hidden = _step(reference, reference_batch)

    model = _build(config, state, dtype)
    loss, logits, binary, hidden = _step(model, batch, logits_at_labels_only)
    finalize_model_grads(model, state)

    dp_slice = slice(state.dp_rank * batch["input_ids"].shape[0], (state.dp_rank + 1) * batch["input_ids"].shape[0])
    assert_close_relative(hidden, ref_hidden[dp_slice], rtol, f"{what}: hidden states")
    full_logits = gather_from_tensor_parallel_region(logits, state)
    expected_logits = ref_logits[dp_slice]
    if logits_at_labels_only:
        expected_logits = expected_logits[batch["mlm_labels"] != -100]
    assert_close_relative(full_logits[..., :VOCAB_SIZE], expected_logits[..., :VOCAB_SIZE], rtol,
                          f"{what}: MLM logits")
    assert (full_logits[..., VOCAB_SIZE:] < -1e29).all(), f"{what}: padded vocabulary rows must get -1e30"
    assert_close_relative(binary, ref_binary[dp_slice], rtol, f"{what}: binary logits")
    if state.dp_size > 1:
        dist.all_reduce(loss, group=state.dp_group)
        loss /= state.dp_size
    assert_close_relative(loss, ref_loss, rtol, f"{what}: loss")

    reference_params = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        grad = gather_full(param.grad, param, state)
        expected = reference_params[name].grad
        if grad.shape != expected.shape:  # vocabulary rows: only the padding differs
            assert grad[VOCAB_SIZE:].abs().max() == 0, f"{what}: gradient reached padding rows of {name}"
            grad, expected = grad[:VOCAB_SIZE], expected[:VOCAB_SIZE]
        assert_close_relative(grad, expected, rtol, f"{what}: gradient of {name}")


def check_tensor_parallel_equals_single(tp: int) -> None:
    base = initialize(tensor_model_parallel_size=tp)
    batch = make_batch()
    for order, sequence_parallel, dtype in itertools.product(
            ("pre", "post"), (False, True), (torch.float64, torch.float32)):
        config = tiny_config(layernorm_order=order)
        state = dataclasses.replace(base, sequence_parallel=sequence_parallel)
        what = f"TP={tp} {order}-LN sequence_parallel={sequence_parallel} {dtype}"
        _compare_with_reference(config, state, dtype, batch, batch, what)
    # The MLM head at labelled positions only (the last layer then runs at those rows alone, except under
    # sequence parallelism) gives the dense model's loss and gradients.
    for order, sequence_parallel in itertools.product(("pre", "post"), (False, True)):
        _compare_with_reference(tiny_config(layernorm_order=order), dataclasses.replace(
            base, sequence_parallel=sequence_parallel), torch.float64, batch, batch,
            f"TP={tp} {order}-LN sequence_parallel={sequence_parallel} logits at labels only",
            logits_at_labels_only=True)
    # The explicit-softmax attention path (the fused-kernel route) must agree as well.
    _compare_with_reference(tiny_config(attention_backend="softmax"), base, torch.float64, batch, batch,
                            f"TP={tp} softmax attention")


def check_data_and_tensor_parallel_equal_single() -> None:
    state = initialize(tensor_model_parallel_size=2)
    assert (state.tp_size, state.dp_size) == (2, 2)
    batch = make_batch(batch=4)
    local = slice_batch(batch, 2 * state.dp_rank, 2 * state.dp_rank + 2)
    for sequence_parallel in (False, True):
        layout = dataclasses.replace(state, sequence_parallel=sequence_parallel)
        _compare_with_reference(tiny_config(), layout, torch.float64, local, batch,
                                f"DP=2 x TP=2 sequence_parallel={sequence_parallel}")


def check_world_size_not_divisible() -> None:
    with pytest.raises(ConfigError, match="world size 2 is not divisible by tensor_model_parallel_size=4"):
        initialize(tensor_model_parallel_size=4)


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_tensor_parallel_equals_single_process(tp):
    run_distributed(check_tensor_parallel_equals_single, tp, tp)


def test_data_parallel_times_tensor_parallel_equals_combined_batch():
    run_distributed(check_data_and_tensor_parallel_equal_single, 4)


def test_world_size_must_be_divisible_by_tp():
    run_distributed(check_world_size_not_divisible, 2)
