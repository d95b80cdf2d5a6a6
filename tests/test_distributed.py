"""reference_impl.distributed: DDP training with torchrun gives the same model as one process.

The main test launches two CPU processes (gloo) with torchrun on a tiny GPT and checks
that they end with the same parameters as one process that sees the same global batches.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference_impl.distributed import create_distributed_dataloader, main, setup_distributed
from reference_impl.model import GPTConfig, GPTModel
from reference_impl.train import load_checkpoint

pytestmark = pytest.mark.slow  # starts processes that import torch: make test runs it, make test-fast does not

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Every effort moves you forward, one small step at a time. " * 6  # 78 GPT-2 tokens


class CountingTokenizer:
    """Token i is the integer i: makes it plain which chunk lands in which batch."""

    def encode(self, text, allowed_special=None):
        return [int(word) for word in text.split()]


def test_each_process_gets_its_share_of_every_global_batch():
    text = " ".join(str(i) for i in range(17))  # 16 input-target pairs of one token each
    shares = [
        [
            batch.flatten().tolist()
            for batch, _ in create_distributed_dataloader(
                text, CountingTokenizer(), batch_size=2, max_length=1, stride=1, rank=rank, world_size=2, shuffle=False
            )
        ]  # fmt: skip
        for rank in range(2)
    ]
    assert shares == [
        [[0, 2], [4, 6], [8, 10], [12, 14]],  # rank 0
        [[1, 3], [5, 7], [9, 11], [13, 15]],  # rank 1: together, the global batches 0-3, 4-7, ...
    ]


def test_without_torchrun_it_is_one_process(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup_distributed()
    assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
    assert not torch.distributed.is_initialized()


def test_help_names_torchrun(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "torchrun --nproc_per_node" in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts three Python processes that import torch
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
@pytest.mark.parametrize(
    "fast",
    [[], ["--fast", "--bf16", "off"], ["--fast", "--bf16", "on"]],
    ids=["float32", "fast path, float32", "fast path, bfloat16 forced"],
)
def test_two_processes_train_exactly_like_one_with_the_global_batch(tmp_path, capsys, fast):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    # Tiny GPT, no dropout (it would draw different masks in each process); the training text
    # gives 17 chunks of 4 tokens: 4 global batches of 4 per epoch, shuffled anew each epoch.
    common = [
        "--text-file", str(text_file), "--context-length", "4", "--emb-dim", "8", "--n-heads", "2",
        "--n-layers", "1", "--drop-rate", "0", "--epochs", "2", "--lr", "1e-2", "--eval-freq", "2",
        "--eval-iter", "1", "--no-progress", "--seed", "7", *fast,
    ]  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    ddp_args = [*common, "--batch-size", "2", "--save", str(tmp_path / "ddp.pth")]  # 2 per process
    ddp = subprocess.run(
        [*launch, "-m", "reference_impl.distributed", *ddp_args],
        cwd=ROOT, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]

    capsys.readouterr()
    main([*common, "--batch-size", "4", "--save", str(tmp_path / "single.pth")])  # this process, alone
    single_out = capsys.readouterr().out

    # Only rank 0 reports: one header, and evaluations after steps 0, 2, 4, 6 of 8.
    assert ddp.stdout.count("process(es)") == 1
    assert "2 process(es) on cpu, 4 steps per epoch, global batch 4" in ddp.stdout
    assert "1 process(es) on cpu, 4 steps per epoch, global batch 4" in single_out
    val_losses = [re.findall(r"Step (\d+)\): .*Val loss (\d+\.\d+)", out) for out in (ddp.stdout, single_out)]
    # In float32 the two runs differ only in the order of their sums. In bfloat16 every product
    # is rounded to 8 bits of mantissa, at different places in each run: the losses agree to
    # bfloat16's precision, not exactly. (Forced here, so that every CPU tests that branch:
    # emulated where the CPU has no bfloat16, slow but tiny.)
    bf16 = "on" in fast
    tolerance = 2e-3 if bf16 else 0.0
    assert [float(loss) for _, loss in val_losses[0]] == pytest.approx(
        [float(v) for _, v in val_losses[1]], abs=tolerance
    )
    assert [step for step, _ in val_losses[0]] == ["000000", "000002", "000004", "000006"]

    ddp_model, single_model = (restore(tmp_path / name) for name in ("ddp.pth", "single.pth"))
    params = list(zip(ddp_model.named_parameters(), single_model.parameters()))
    if bf16:
        # AdamW divides each element's step by its gradient's running size: an element whose true
        # gradient is within bfloat16's rounding of zero (an output row of a token the text never
        # shows) takes steps of about the learning rate whose sign is the rounding's, differently in
        # each run. So: nearly every element agrees to 1e-3, and none differs by more than the
        # 8 steps of at most ~lr each could make it.
        steps, lr = 8, 1e-2
        for (name, a), b in params:
            close = (a - b).abs() <= 1e-3 + 1e-3 * b.abs()
            assert close.float().mean() >= 0.99, f"{name}: only {close.float().mean():.2%} of the elements agree"
            assert (a - b).abs().max() <= 2 * steps * lr, name
    else:
        for (name, a), b in params:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    torch.manual_seed(7)
    untrained = GPTModel(single_model.cfg)
    moved = max((a - b).abs().max().item() for a, b in zip(single_model.parameters(), untrained.parameters()))
    assert moved > 0.05  # the models did train, far beyond the tolerance


def restore(path) -> GPTModel:
    """The model saved by main(): its configuration is among the checkpoint's extras."""
    cfg = GPTConfig(**torch.load(path, weights_only=True)["extra"]["cfg"])
    model = GPTModel(cfg)
    assert load_checkpoint(path, model)["epochs"] == 2
    return model


def test_a_stuck_process_fails_after_the_timeout_given_not_torchs_30_minutes(monkeypatch):
    from reference_impl import distributed

    seen = {}
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29500")
    distributed.setup_distributed(timeout_s=42)
    assert seen["timeout"].total_seconds() == 42
    assert distributed.build_parser().parse_args([]).timeout == distributed.DEFAULT_TIMEOUT_S == 300
