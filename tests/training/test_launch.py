"""`megabio pretrain` as users launch it, in real processes: killed with SIGKILL and resumed, a rank killed
under `torchrun --max-restarts 1`, and two torchrun agents joined by a c10d rendezvous as two nodes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from megabio.checkpoint import latest_iteration, read_checkpoint
from megabio.cli import main
from tests.data.test_bert_dataset import VOCAB, random_corpus

STEP_5_SAVED = "saved checkpoint at iteration 5"


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> list[str]:
    """Flags of a 10-step tiny run that checkpoints at steps 5 and 10."""
    directory = tmp_path_factory.mktemp("launch")
    prefix = random_corpus(directory / "corpus", documents=120)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return ["--preset", "tiny", "--vocab-file", str(vocab), "--data-path", str(prefix), "--seq-length", "64",
            "--micro-batch-size", "2", "--global-batch-size", "8", "--train-iters", "10", "--lr", "1e-3",
            "--save-interval", "5", "--log-interval", "1"]


def launch(command: list[str], on_line: Callable[[str, subprocess.Popen], None] | None = None,
           timeout: float = 240) -> tuple[int, list[str]]:
    """Run `command`, streaming its output lines through `on_line`; (exit code, lines)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if on_line is not None:
                on_line(line, proc)
        return proc.wait(timeout=timeout), lines
    finally:
        if proc.poll() is None:
            proc.kill()


def pretrain_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "megabio", "pretrain", *flags]


def torchrun(*flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *flags]


def losses(lines: list[str]) -> dict[int, str]:
    """Iteration -> logged loss (as printed) of every `iteration N | loss X` line."""
    found = {}
    for line in lines:
        match = re.search(r"iteration +(\d+) \| loss (\S+)", line)
        if match:
            found[int(match[1])] = match[2]
    return found


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(directory)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigkill_after_a_checkpoint_resumes_exactly(job, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    code, uninterrupted = launch(pretrain_command(*job, "--save", str(reference)))
    assert code == 0, "\n".join(uninterrupted[-20:])

    def kill_after_step_5(line: str, proc: subprocess.Popen) -> None:
        if STEP_5_SAVED in line:
            proc.send_signal(signal.SIGKILL)

    code, _ = launch(pretrain_command(*job, "--save", str(killed)), kill_after_step_5)
    assert code == -signal.SIGKILL and latest_iteration(killed) == 5
    code, resumed = launch(pretrain_command(*job, "--save", str(killed), "--load", str(killed)))
    assert code == 0, "\n".join(resumed[-20:])
    assert any(f"resumed from {killed} at iteration 5" in line for line in resumed)
    assert losses(resumed) == {i: loss for i, loss in losses(uninterrupted).items() if i > 5}
    for name, tensor in weights(reference).items():
        assert torch.equal(tensor, weights(killed)[name]), name
    vocab = job[job.index("--vocab-file") + 1]
    assert (killed / "vocab.txt").read_text() == Path(vocab).read_text(), "the vocabulary is kept beside"


def test_torchrun_restarts_a_killed_rank_from_the_checkpoint(job, tmp_path, capsys):
    """TP=2 x DP=2 under torchrun --max-restarts 1: SIGKILL one rank after the step-5 checkpoint; the agent
    restarts the job, which resumes at step 5 and ends as a one-process run of the same batches."""
    no_dropout = ["--hidden-dropout", "0", "--attention-dropout", "0"]
    assert main(["pretrain", *job, *no_dropout, "--save", str(tmp_path / "reference")]) == 0
    reference = losses(capsys.readouterr().out.splitlines())
    save = str(tmp_path / "restarted")
    killed = []

    def kill_a_rank(line: str, proc: subprocess.Popen) -> None:
        if STEP_5_SAVED in line and not killed:
            workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            os.kill(int(workers[-1]), signal.SIGKILL)
            killed.append(workers[-1])

    code, lines = launch(torchrun("--standalone", "--nproc-per-node", "4", "--max-restarts", "1",
                                  "-m", "megabio", "pretrain", *job, *no_dropout, "--tensor-model-parallel-size", "2",
                                  "--save", save, "--load", save), kill_a_rank)
    assert code == 0 and killed, "\n".join(lines[-30:])
    assert any(f"resumed from {save} at iteration 5" in line for line in lines)
    assert latest_iteration(save) == 10
    after = losses(lines[next(i for i, line in enumerate(lines) if "resumed from" in line):])
    assert sorted(after) == [6, 7, 8, 9, 10]
    assert all(abs(float(after[i]) - float(reference[i])) <= 2e-4 for i in after), (after, reference)
    ours, expected = weights(Path(save)), weights(tmp_path / "reference")
    for name, tensor in expected.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_two_torchrun_agents_train_as_two_nodes(job, tmp_path, capsys):
    """`--nnodes 2` with a c10d rendezvous on 127.0.0.1: DP=2 across the "nodes" trains like one process."""
    no_dropout = ["--hidden-dropout", "0", "--attention-dropout", "0"]
    assert main(["pretrain", *job, *no_dropout, "--save", str(tmp_path / "reference")]) == 0
    capsys.readouterr()
    endpoint = f"127.0.0.1:{free_port()}"
    command = torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                       endpoint, "--rdzv-id", "megabio-test", "-m", "megabio", "pretrain", *job, *no_dropout,
                       "--save", str(tmp_path / "two-nodes"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        code, lines = launch(command)
        second_output = second.communicate(timeout=240)[0]
    finally:
        second.kill()
    assert code == 0 and second.returncode == 0, "\n".join(lines[-20:]) + second_output[-2000:]
    assert any("TP=1 DP=2" in line for line in lines + second_output.splitlines())
    ours, expected = weights(tmp_path / "two-nodes"), weights(tmp_path / "reference")
    for name, tensor in expected.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
