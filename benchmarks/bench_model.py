"""One pretraining step (forward, backward, AdamW) of the `small` preset on CPU, megabio against
transformers' MegatronBertForPreTraining of the same shape, measured in the same run.

Prints tokens/s for fp32 and bf16 autocast, the ratio to transformers, and the achieved FLOP/s (of the
matmuls each variant does) as a share of a large matmul's FLOP/s measured here too; first, whether the CPU
has AMX and torch uses it, and the matmul rate of both dtypes, so that a figure is read against the CPU it
came from. The last column is the ratio a variant would reach if all its matmuls ran at that rate and
nothing else took time: where transformers already runs near the matmul rate (fp32 on a CPU without AMX),
it bounds what any implementation can show there. megabio runs four ways: with the pure-PyTorch reference
ops (MEGABIO_KERNELS=reference), with the fused kernels, with the fused kernels and every transformer layer
compiled by torch.compile (inductor), and with the fused kernels and the MLM head evaluated only at the
labelled positions (logits_at_labels_only, as `megabio pretrain` runs; the last layer's queries,
attention, output projection and MLP then run there too, and at the first tokens). The dense-head variants compute
the logits at every position, as transformers does, but the backward of megabio's vocabulary projection
multiplies only the rows that receive a gradient (the labelled ones; the FLOP counts say so).
megabio's float32 linear layers run oneDNN's GEMM where that is the faster one (AMD CPUs;
`megabio.kernels.linear`), so the matmul rate is printed for ATen's matmul (transformers' and the
reference ops' rate) and for megabio's linear (the fused variants' rate).

    python benchmarks/bench_model.py [--batch 16 --seq 128 --steps 5] [--precisions fp32 bf16]
                                     [--allocator tcmalloc|system] [--profile]

Both sides step the AdamW `megabio pretrain` uses on CPU (torch's fused one). The five models take turns
step by step, so drift in the machine's speed falls on all of them. With
tcmalloc installed the script re-runs itself on it (megabio.cpu_allocator), for both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import torch

from megabio.config import ModelConfig
from megabio.cpu_allocator import active_allocator, rerun_with_tcmalloc
from megabio.kernels.linear import cpu_gemm, linear
from megabio.model import IGNORE_INDEX, BertForPretraining
from megabio.training.engine import slow_precision_note
from megabio.training.optimizer import adamw_class


def training_flops(config: ModelConfig, batch: int, seq: int, head_rows: int | None = None,
                   projection_backward_rows: int | None = None) -> float:
    """Matmul FLOPs of forward + backward (2x forward) of BertForPretraining. The MLM head runs on
    `head_rows` rows (by default all batch * seq tokens; fewer means the last layer's queries, attention,
    output projection and MLP run there too, plus the first tokens; its spare query slots are not counted)
    and its vocabulary projection's backward on `projection_backward_rows` (by default as many as its
    forward)."""
    h, f, tokens = config.hidden_size, config.ffn_hidden_size, batch * seq

    def layer(queried: int) -> int:  # keys and values everywhere; queries, attention, output projection, MLP
        return 2 * tokens * 2 * h * h + 2 * queried * h * h + 2 * 2 * queried * seq * h \
            + 2 * queried * (h * h + 2 * h * f)

    rows = tokens if head_rows is None else head_rows
    last_layer_rows = tokens if head_rows is None else head_rows + batch
    layers = (config.num_layers - 1) * layer(tokens) + layer(last_layer_rows)
    backward_rows = rows if projection_backward_rows is None else projection_backward_rows
    transform = 3 * 2 * rows * h * h
    projection = 2 * h * config.padded_vocab_size() * (rows + 2 * backward_rows)
    return 3.0 * layers + transform + projection


def matmul_flops_per_second(dtype: torch.dtype, product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            size: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """The best of `trials` rates, each over `repeats` products: the machine's capability, not a dip."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    product(a, b)  # warm up
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            product(a, b)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best


def matmul_rates(precisions: list[str]) -> dict[str, dict[str, float]]:
    """GFLOP/s of a 2048^3 product per dtype asked for (bf16 can take minutes on a CPU without native bf16):
    ATen's matmul (what transformers' layers run) and megabio's linear. Only float32 on oneDNN (`cpu_gemm()`)
    is a different GEMM; otherwise megabio's rate is ATen's, not measured twice."""
    rates = {}
    with torch.no_grad():
        for name in precisions:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
            aten = matmul_flops_per_second(dtype, torch.matmul) / 1e9
            own_gemm = dtype == torch.float32 and cpu_gemm() == "onednn"
            rates[name] = {"aten": aten, "megabio": (matmul_flops_per_second(dtype, lambda a, b: linear(a, b)) / 1e9
                                                     if own_gemm else aten)}
    return rates


def amx_status() -> str:
    """Whether the CPU has AMX tiles (cpuinfo) and whether this torch build can use them (oneDNN)."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    usable = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return f"AMX: {'yes' if 'amx_bf16' in flags else 'no'} in the CPU, {'used' if usable else 'not used'} by torch"


def make_batch(config: ModelConfig, batch: int, seq: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq), generator=generator)
    labels = ids.masked_fill(torch.rand(batch, seq, generator=generator) > 0.15, IGNORE_INDEX)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                token_type_ids=torch.zeros_like(ids), labels=labels,
                binary_labels=torch.randint(0, 2, (batch,), generator=generator))


def cpu_adamw(parameters) -> torch.optim.Optimizer:
    """The AdamW `megabio pretrain` steps on CPU (torch's fused one), for both sides alike."""
    cls, extra = adamw_class(torch.device("cpu"))
    return cls(parameters, lr=1e-4, **extra)


def megabio_step(config: ModelConfig, logits_at_labels_only: bool = False,
                 compile_layers: bool = False) -> Callable[[dict], torch.Tensor]:
    model = BertForPretraining(config)
    if compile_layers:  # torch.compile (inductor) of each transformer layer, forward and backward
        for layer in model.bert.encoder.layers:
            layer.compile()
    optimizer = cpu_adamw(model.parameters())

    def step(batch: dict) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                           mlm_labels=batch["labels"], binary_labels=batch["binary_labels"],
                           logits_at_labels_only=logits_at_labels_only)
        loss.backward()
        optimizer.step()
        return loss

    return step


def transformers_step(config: ModelConfig) -> Callable[[dict], torch.Tensor]:
    from transformers import MegatronBertConfig, MegatronBertForPreTraining

    hf_config = MegatronBertConfig(
        vocab_size=config.padded_vocab_size(), hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_attention_heads,
        intermediate_size=config.ffn_hidden_size, max_position_embeddings=config.max_position_embeddings,
        layer_norm_eps=config.layernorm_epsilon)
    model = MegatronBertForPreTraining(hf_config)
    model.train()
    optimizer = cpu_adamw(model.parameters())

    def step(batch: dict) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                    next_sentence_label=batch["binary_labels"])
        out.loss.backward()
        optimizer.step()
        return out.loss

    return step


def time_steps(steps: list[Callable[[dict], torch.Tensor]], batch: dict, repeats: int, bf16: bool) -> list[float]:
    """Median seconds per step of each step function after one warm-up step, the functions taking turns
    within each repetition so that drift in the machine's speed falls on all of them alike."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times: list[list[float]] = [[] for _ in steps]
    for i in range(repeats + 1):
        for which, step in enumerate(steps):
            start = time.perf_counter()
            with autocast:
                loss = step(batch)
            assert torch.isfinite(loss), "loss is not finite"
            if i:
                times[which].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


# Where a step's time goes: each profiled op's own time, by kind.
_OP_KINDS = (("matmuls", lambda name: name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                                               "mkldnn::_linear_pointwise")),
             ("copies and casts", lambda name: name == "aten::copy_"),
             ("fused kernels", lambda name: name.startswith("megabio::")),
             ("AdamW", lambda name: "adamw" in name))


def time_by_op_kind(step: Callable[[dict], torch.Tensor], batch: dict, bf16: bool, repeats: int = 2
                    ) -> dict[str, float]:
    """Shares of `step`'s CPU time (torch profiler, `repeats` steps) per kind of op; the rest is "other"
    (cross entropy, reductions, allocation, autograd's own work)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.profiler.profile() as profile:
        for _ in range(repeats):
            with autocast:
                step(batch)
    shares = dict.fromkeys([kind for kind, _ in _OP_KINDS] + ["other"], 0.0)
    for event in profile.key_averages():
        kind = next((kind for kind, matches in _OP_KINDS if matches(event.key)), "other")
        shares[kind] += event.self_cpu_time_total
    total = sum(shares.values())
    return {kind: seconds / total for kind, seconds in shares.items()}


def with_kernels(mode: str, step: Callable[[dict], torch.Tensor]) -> Callable[[dict], torch.Tensor]:
    """`step` run with MEGABIO_KERNELS=mode (read by megabio.kernels on every call)."""

    def run(batch: dict) -> torch.Tensor:
        os.environ["MEGABIO_KERNELS"] = mode
        try:
            return step(batch)
        finally:
            os.environ.pop("MEGABIO_KERNELS")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                        help="default: fp32, and bf16 where the CPU computes it natively (elsewhere bf16 rows "
                             "would time a software emulation of its matmuls)")
    parser.add_argument("--profile", action="store_true",
                        help="then also print where the labelled-logits step's time goes, by kind of op")
    parser.add_argument("--allocator", choices=["tcmalloc", "system"], default="tcmalloc",
                        help="tcmalloc (when installed) or the system malloc, for both models")
    args = parser.parse_args()
    if args.allocator == "tcmalloc":
        rerun_with_tcmalloc()
    if args.precisions is None:
        emulated = slow_precision_note("bf16", torch.device("cpu"))
        args.precisions = ["fp32"] if emulated else ["fp32", "bf16"]
        if emulated:
            print("bf16 rows left out: this CPU has no native bf16 arithmetic (--precisions fp32 bf16 runs them)")

    config = ModelConfig.from_preset(args.preset)
    batch = make_batch(config, args.batch, args.seq)
    tokens = args.batch * args.seq
    flops = training_flops(config, args.batch, args.seq)
    print(f"preset {args.preset}, batch {args.batch} x seq {args.seq}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {active_allocator()}; median of {args.steps} steps, the models taking turns")
    rates = matmul_rates(args.precisions)
    measured = {"fp32": lambda r: f"fp32 ATen {r['aten']:.0f}, megabio's linear {r['megabio']:.0f}",
                "bf16": lambda r: f"bf16 (one GEMM for both) {r['aten']:.0f}"}
    print(f"{amx_status()}; megabio's float32 GEMM: {cpu_gemm()}; 2048^3 matmul GFLOP/s: "
          + "; ".join(measured[name](rates[name]) for name in args.precisions))
    print("| precision | megabio | tok/s | transformers tok/s | ratio | megabio GFLOP/s | matmul GFLOP/s "
          "| % of matmul | ratio at the matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    variants = (  # (name, kernels, MLM logits only at labelled positions, compiled layers)
        ("reference ops", "reference", False, False), ("fused kernels", "auto", False, False),
        ("fused kernels, compiled layers", "auto", False, True),
        ("fused kernels, labelled logits", "auto", True, False))
    labelled_rows = int((batch["labels"] != IGNORE_INDEX).sum())
    for precision in args.precisions:
        bf16 = precision == "bf16"
        torch.manual_seed(0)
        steps = [transformers_step(config)]
        for _, kernels, labelled_only, compiled in variants:
            torch.manual_seed(0)
            steps.append(with_kernels(kernels, megabio_step(config, labelled_only, compiled)))
        theirs, *ours_by_variant = time_steps(steps, batch, args.steps, bf16)
        their_peak = rates[precision]["aten"] * 1e9
        print(f"| {precision} | (transformers) | | {tokens / theirs:,.0f} | | {flops / theirs / 1e9:.0f} | "
              f"{their_peak / 1e9:.0f} | {100 * flops / theirs / their_peak:.0f}% | |")
        for (name, kernels, labelled_only, _), ours in zip(variants, ours_by_variant, strict=True):
            # The reference ops run ATen's GEMM (MEGABIO_KERNELS=reference), the others megabio's linear.
            peak = rates[precision]["aten" if kernels == "reference" else "megabio"] * 1e9
            # The work this variant does, and the ratio it would reach if all of it ran at the matmul rate.
            # megabio's vocabulary projection multiplies only the rows with a gradient (the labelled ones)
            # in its backward, in every variant.
            work = training_flops(config, args.batch, args.seq, labelled_rows if labelled_only else None,
                                  labelled_rows)
            print(f"| {precision} | {name} | {tokens / ours:,.0f} | {tokens / theirs:,.0f} | {theirs / ours:.2f}x | "
                  f"{work / ours / 1e9:.0f} | {peak / 1e9:.0f} | {100 * work / ours / peak:.0f}% | "
                  f"{theirs / (work / peak):.2f}x |", flush=True)
        if args.profile:
            shares = time_by_op_kind(steps[-1], batch, bf16)
            print(f"{precision} labelled-logits step, share of its time: "
                  + ", ".join(f"{kind} {100 * share:.1f}%" for kind, share in shares.items()))
        del steps  # free these models before the next precision builds its own


if __name__ == "__main__":
    main()
