"""Quickstart behind `make demo`: the tiny model, tensor-parallel over every process, trained for a few
steps on one fixed batch of random tokens (so the MLM loss visibly falls).

    torchrun --standalone --nproc-per-node 2 examples/quickstart.py [--steps 30]
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist

from megabio.config import ModelConfig
from megabio.model import IGNORE_INDEX, BertForPretraining
from megabio.parallel import finalize_model_grads, initialize


def random_mlm_batch(config: ModelConfig, batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    """Random tokens with 15% of positions as MLM targets (replaced by id 0 in the input)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, config.vocab_size, (batch, seq), generator=generator)
    masked = torch.rand(batch, seq, generator=generator) < 0.15
    return dict(input_ids=tokens.masked_fill(masked, 0),
                token_type_ids=(torch.arange(seq) >= seq // 2).long().expand(batch, seq),
                mlm_labels=tokens.masked_fill(~masked, IGNORE_INDEX),
                binary_labels=torch.randint(0, 2, (batch,), generator=generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    state = initialize(tensor_model_parallel_size=dist.get_world_size())
    torch.manual_seed(args.seed)  # same seed everywhere: weights are drawn in full, then sliced
    config = ModelConfig.from_preset("tiny", vocab_size=1024)
    model = BertForPretraining(config, state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    batch = random_mlm_batch(config, batch=8, seq=64, seed=args.seed)
    if dist.get_rank() == 0:
        print(f"tiny model, TP={state.tp_size}: {sum(p.numel() for p in model.parameters()):,} parameters "
              f"per rank; {args.steps} steps on one batch of random tokens", flush=True)
    for step in range(1, args.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = model(**batch)
        loss.backward()
        finalize_model_grads(model, state)
        optimizer.step()
        if dist.get_rank() == 0 and (step == 1 or step % 5 == 0):
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
