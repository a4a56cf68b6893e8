"""Named RNG streams, so dropout on TP-sharded activations differs per rank while replicated dropout agrees.

The default torch generator drives dropout on activations that every TP rank holds in full (it is seeded
alike on all of them). `RNGStatesTracker.fork(MODEL_PARALLEL_RNG)` swaps in a stream seeded with
seed + 2718 + tp_rank (Megatron's offset) for activations that are split over TP: attention probabilities,
and everything under sequence parallelism. States are plain tensors, so they go into checkpoints and are
restored for activation recomputation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.utils.checkpoint

from megabio.parallel.state import ParallelState

MODEL_PARALLEL_RNG = "model-parallel-rng"
_MODEL_PARALLEL_SEED_OFFSET = 2718


def _get_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class RNGStatesTracker:
    """Named RNG streams with a `fork(name, device)` context that runs code on one of them.

    A stream is seeded once by name and materialised per device on first use, so the same tracker
    serves a model on CPU or GPU. The default generator is never reseeded.
    """

    def __init__(self) -> None:
        self._seeds: dict[str, int] = {}
        self._states: dict[str, torch.Tensor] = {}  # "name/device" -> generator state

    def add(self, name: str, seed: int) -> None:
        """Create stream `name` seeded with `seed`."""
        if name in self._seeds:
            raise ValueError(f"RNG stream {name!r} already exists")
        self._seeds[name] = seed

    def get_states(self) -> dict[str, torch.Tensor]:
        """A copy of every materialised stream state (for checkpoints and recomputation)."""
        return {key: state.clone() for key, state in self._states.items()}

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._states = {key: state.clone() for key, state in states.items()}

    @contextlib.contextmanager
    def fork(self, name: str = MODEL_PARALLEL_RNG, device: torch.device | str = "cpu") -> Iterator[None]:
        """Run the body on stream `name` of `device`; the default generator is restored afterwards."""
        if name not in self._seeds:
            raise KeyError(f"RNG stream {name!r} was never added; known: {sorted(self._seeds)}")
        device = torch.device(device)
        key = f"{name}/{device}"
        if key not in self._states:
            self._states[key] = torch.Generator(device).manual_seed(self._seeds[name]).get_state()
        saved = _get_state(device)
        _set_state(self._states[key], device)
        try:
            yield
        finally:
            self._states[key] = _get_state(device)
            _set_state(saved, device)

    def fork_if_sharded(self, sharded: bool, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The model-parallel stream for activations split over TP, else the default generator."""
        return self.fork(MODEL_PARALLEL_RNG, device) if sharded else contextlib.nullcontext()


def model_parallel_rng_tracker(seed: int, state: ParallelState) -> RNGStatesTracker:
    """A tracker whose model-parallel stream is seeded with seed + 2718 + tp_rank, as Megatron does."""
    tracker = RNGStatesTracker()
    tracker.add(MODEL_PARALLEL_RNG, (seed + _MODEL_PARALLEL_SEED_OFFSET + state.tp_rank) % 2**63)
    return tracker


def checkpoint_with_rng(
    function: Callable[..., Any], tracker: RNGStatesTracker, *args: torch.Tensor
) -> Any:
    """torch.utils.checkpoint that also replays the tracker's streams, so recomputed dropout masks match.

    torch's checkpoint restores the default generator itself; the tracker's named streams are ours.
    """
    snapshot = tracker.get_states()
    calls = 0

    def run(*inputs: torch.Tensor) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return function(*inputs)
        # Recomputation: replay from the snapshot, then put the streams back where training left them.
        current = tracker.get_states()
        tracker.set_states(snapshot)
        try:
            return function(*inputs)
        finally:
            tracker.set_states(current)

    return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True)
