"""Megatron-LM's `pretrain_bert.py` flags on `megabio pretrain`: each one megabio has a feature for is
translated to megabio's own flag, settings megabio has no choice in are accepted at their one value, and
the rest are named together in one error with what to use instead."""

from __future__ import annotations

from megabio.config import ConfigError

# Megatron flag -> megabio flag (the value follows unchanged).
RENAMED = {"--mask-prob": "--masked-lm-prob"}
# Megatron switch -> megabio flag and value.
SWITCHES = {"--bert-no-binary-head": ["--binary-head", "none"]}
# Megatron flag -> the values megabio runs as (None: any value; the flag changes nothing here).
ACCEPTED = {
    "--data-impl": {"mmap"},
    "--tokenizer-type": {"BertWordPieceLowerCase", "BertWordPieceCase"},
    "--distributed-backend": {"nccl", "gloo"},
    "--pipeline-model-parallel-size": {"1"},
    "--num-workers": None,
}
# Megatron switches megabio always behaves as (its fused kernels are per-call dispatch).
ACCEPTED_SWITCHES = {"--no-masked-softmax-fusion", "--no-bias-gelu-fusion", "--no-bias-dropout-fusion",
                     "--no-gradient-accumulation-fusion", "--no-async-tensor-model-parallel-allreduce"}
UNSUPPORTED = {
    "--split": "megabio pretraining has no validation or test pass: every document of --data-path trains "
               "(preprocess a held-out set apart and drop --split)",
    "--eval-interval": "there is no validation pass: drop it (evaluate checkpoints with the fine-tuning recipes)",
    "--eval-iters": "there is no validation pass: drop it",
    "--vocab-extra-ids": "BERT pretraining here has no extra sentinel ids: drop it",
    "--fp16-lm-cross-entropy": "the cross entropy always runs in float32 here: drop it",
}


def _split(argument: str) -> tuple[str, str | None]:
    flag, _, value = argument.partition("=")
    return (flag, value) if "=" in argument else (argument, None)


def translate(argv: list[str]) -> list[str]:
    """`argv` with Megatron's flags in megabio's words; ConfigError naming every unsupported one."""
    out: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(argv):
        flag, inline = _split(argv[i])
        takes_value = flag in RENAMED or flag in ACCEPTED or flag in UNSUPPORTED
        value = inline if inline is not None else (argv[i + 1] if takes_value and i + 1 < len(argv) else None)
        step = 2 if takes_value and inline is None else 1
        if flag in RENAMED:
            out += [RENAMED[flag], value]
        elif flag in SWITCHES:
            out += SWITCHES[flag]
        elif flag in ACCEPTED:
            allowed = ACCEPTED[flag]
            if allowed is not None and value not in allowed:
                problems.append(f"{flag} {value}: megabio runs only as {' / '.join(sorted(allowed))}")
        elif flag in UNSUPPORTED:
            problems.append(f"{flag}: {UNSUPPORTED[flag]}")
        elif flag not in ACCEPTED_SWITCHES:
            out.append(argv[i])
            step = 1
        i += step
    if problems:
        raise ConfigError("Megatron-LM flags megabio does not support: " + "; ".join(problems))
    return out
