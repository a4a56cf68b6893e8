"""megabio's fused CPU kernels against the eager PyTorch composites they replace, forward + backward, at
training shapes (batch 16, 16 heads, seq 128 and 512, hidden 1024; the MLM cross entropy at 15% of the
tokens over a 30,592-word vocabulary), fp32 and bf16.

Prints the speedup over eager and the achieved bandwidth (the minimum bytes each op must move, over its
time) as a share of a plain 64 MB memory copy, which takes its turn with eager and fused in every
repetition.

    python benchmarks/bench_kernels.py [--repeats 9] [--seqs 128 512] [--allocator tcmalloc|system]

With tcmalloc installed the script re-runs itself on it (see megabio.cpu_allocator): every op, eager or
fused, allocates its outputs, and under glibc's malloc their first touch (page faults) costs as much as
the memory-bound kernels' work on a virtual machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from megabio.cpu_allocator import active_allocator, rerun_with_tcmalloc
from megabio.kernels import _extension, bias_dropout_add, bias_gelu, dropout, layer_norm, scaled_masked_softmax
from megabio.kernels.scaled_masked_softmax import scaled_masked_softmax_reference
from megabio.parallel import ParallelState, vocab_parallel_cross_entropy

BATCH, HEADS, HIDDEN, VOCAB = 16, 16, 1024, 30592


@dataclass
class Case:
    name: str
    fused: Callable[..., torch.Tensor]
    eager: Callable[..., torch.Tensor]
    inputs: Callable[[torch.dtype], list]
    bytes_moved: Callable[[torch.dtype], float]


def _n_bytes(shape: tuple[int, ...], dtype: torch.dtype) -> float:
    return float(torch.Size(shape).numel() * dtype.itemsize)


def cases(seq: int) -> list[Case]:
    scores = (BATCH, HEADS, seq, seq)
    tokens = BATCH * seq
    ffn = (tokens, 4 * HIDDEN)
    hidden = (tokens, HIDDEN)
    logits = (int(0.15 * tokens), VOCAB)
    mask = torch.rand(BATCH, 1, 1, seq) < 0.1
    scale = 0.125

    def rand(shape, dtype, grad=True):
        return torch.randn(shape).to(dtype).requires_grad_(grad)

    return [
        # Minimum traffic: forward reads x, writes y; backward reads grad and one saved tensor, writes dx.
        Case("scaled_masked_softmax", lambda x: scaled_masked_softmax(x, mask, scale),
             lambda x: scaled_masked_softmax_reference(x, mask, scale),
             lambda dt: [rand(scores, dt)], lambda dt: 5 * _n_bytes(scores, dt)),
        Case("bias_gelu", bias_gelu, lambda x, b: F.gelu(x + b),
             lambda dt: [rand(ffn, dt), rand(ffn[-1:], dt)], lambda dt: 5 * _n_bytes(ffn, dt)),
        # The tanh approximation: Megatron's fused GeLU, kept by models converted from Megatron-LM.
        Case("bias_gelu_tanh", lambda x, b: bias_gelu(x, b, approximate="tanh"),
             lambda x, b: F.gelu(x + b, approximate="tanh"),
             lambda dt: [rand(ffn, dt), rand(ffn[-1:], dt)], lambda dt: 5 * _n_bytes(ffn, dt)),
        Case("layer_norm", lambda x, w, b: layer_norm(x, w, b, 1e-5),
             lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, 1e-5),
             lambda dt: [rand(hidden, dt), rand(hidden[-1:], dt), rand(hidden[-1:], dt)],
             lambda dt: 5 * _n_bytes(hidden, dt)),
        # Attention-probability dropout: forward reads x, writes out and a 1-byte mask; backward reads grad
        # and mask, writes dx.
        Case("dropout", lambda x: dropout(x, 0.1, True), lambda x: F.dropout(x, 0.1, True),
             lambda dt: [rand(scores, dt)], lambda dt: 4 * _n_bytes(scores, dt) + 2 * _n_bytes(scores, torch.bool)),
        # Forward reads x and residual, writes out and a 1-byte mask; backward reads grad and mask, writes dx.
        # The residual's gradient is the upstream one passed through: a residual that required it would add
        # AccumulateGrad's copy of that tensor to both timings.
        Case("bias_dropout_add", lambda x, b, r: bias_dropout_add(x, b, r, 0.1, True),
             lambda x, b, r: r + F.dropout(x + b, 0.1, True),
             lambda dt: [rand(hidden, dt), rand(hidden[-1:], dt), rand(hidden, dt, grad=False)],
             lambda dt: 5 * _n_bytes(hidden, dt) + 2 * _n_bytes(hidden, torch.bool)),
        # The MLM loss at the ~15% labelled positions over BERT's padded vocabulary, against what autocast
        # runs for transformers (F.cross_entropy in float32). Forward reads the logits; backward reads them
        # again and writes their gradient.
        Case("vocab_cross_entropy", lambda z, t: vocab_parallel_cross_entropy(z, t, ParallelState.single()),
             lambda z, t: F.cross_entropy(z.float(), t, reduction="none"),
             lambda dt: [rand(logits, dt), torch.randint(0, VOCAB, logits[:1])],
             lambda dt: 3 * _n_bytes(logits, dt)),
    ]


def forward_backward(function: Callable[..., torch.Tensor], inputs: list) -> Callable[[], None]:
    """One forward + backward of `function` on `inputs` (upstream gradient of ones), as a callable."""
    upstream: list[torch.Tensor] = []

    def run() -> None:
        for tensor in inputs:
            tensor.grad = None
        out = function(*inputs)
        if not upstream:
            upstream.append(torch.ones_like(out))
        out.backward(upstream[0])

    return run


class Copy:
    """A copy of a 64 MB tensor into an existing one: the memory rate the kernels are compared with."""

    def __init__(self, n_bytes: int = 64 * 2**20) -> None:
        self.src = torch.empty(n_bytes // 4).uniform_()
        self.dst = torch.empty_like(self.src)
        self.bytes_moved = 2 * n_bytes  # read + write

    def __call__(self) -> None:
        self.dst.copy_(self.src)


def median_times(turns: list[Callable[[], None]], repeats: int) -> list[float]:
    """Median seconds of each callable after two warm-ups, the callables taking turns within each
    repetition so that drift in the machine's speed falls on all of them alike."""
    times: list[list[float]] = [[] for _ in turns]
    for i in range(repeats + 2):
        for which, turn in enumerate(turns):
            start = time.perf_counter()
            turn()
            if i > 1:
                times[which].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seqs", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--allocator", choices=["tcmalloc", "system"], default="tcmalloc",
                        help="tcmalloc (when installed) or the system malloc")
    args = parser.parse_args()
    if args.allocator == "tcmalloc":
        rerun_with_tcmalloc()
    if _extension.compiled_ops() is None:
        raise SystemExit(f"compiled kernels unavailable: {_extension.status()}")
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {active_allocator()}; forward + "
          f"backward, median of {args.repeats}. Both sides allocate their outputs, whose first touch (page "
          f"faults) counts in their time. The copy takes its turn with them in every repetition (the "
          f"machine's memory rate drifts).")
    print("| op | seq | dtype | eager ms | fused ms | speedup | fused GB/s | copy GB/s | % of copy |")
    print("|---|---|---|---|---|---|---|---|---|")
    copy = Copy()
    for seq in args.seqs:
        for case in cases(seq):
            for dtype in (torch.float32, torch.bfloat16):
                inputs = case.inputs(dtype)
                eager, fused, copied = median_times(
                    [forward_backward(case.eager, inputs), forward_backward(case.fused, inputs), copy], args.repeats)
                bandwidth = copy.bytes_moved / copied
                achieved = case.bytes_moved(dtype) / fused
                print(f"| {case.name} | {seq} | {str(dtype).removeprefix('torch.')} | {eager * 1e3:.1f} | "
                      f"{fused * 1e3:.1f} | {eager / fused:.2f}x | {achieved / 1e9:.1f} | {bandwidth / 1e9:.1f} | "
                      f"{100 * achieved / bandwidth:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
