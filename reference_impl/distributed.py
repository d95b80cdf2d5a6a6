"""Training on several processes at once with DistributedDataParallel (appendix A/D).

Each process holds a full copy of the model and trains on its own share of every batch;
after ``loss.backward()`` DDP averages the gradients over the processes, so every copy
takes the same optimizer step. With a per-process batch of ``b`` on ``n`` processes this
is the same training as one process with batches of ``n * b``, only faster.

Launch it with ``torchrun``, which starts the processes and tells each its rank::

    torchrun --nproc_per_node=2 -m reference_impl.distributed --epochs 2

(``python -m reference_impl.distributed`` runs the same thing in one process.)
It uses the same loop as single-process training, ``train.train_model_simple``:
only rank 0 evaluates, prints, shows the progress bar and saves the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from .data import GPTDatasetV1
from .fast import FastPath
from .model import GPTConfig, GPTModel
from .train import save_checkpoint, train_model_simple


class DistributedContext(NamedTuple):
    rank: int  # this process among all processes, 0 .. world_size - 1
    local_rank: int  # this process among those on this machine: picks its GPU
    world_size: int  # how many processes train together
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


DEFAULT_TIMEOUT_S = 300.0  # a stuck process stops the others after 5 minutes, not torch's 30


def setup_distributed(timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedContext:
    """Join the process group that ``torchrun`` set up, through its environment variables.

    torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. The backend is
    NCCL on CUDA GPUs (one GPU per process) and gloo on CPUs. Without torchrun (no RANK
    variable) this is a single process, rank 0 of 1, and no process group is created.
    ``timeout_s``: how long a process waits for the others in a collective (the gradient
    averaging) before it fails, instead of torch's default of 30 minutes for a stuck rank.
    """
    if timeout_s <= 0:
        raise ValueError(f"the process group timeout must be positive, got {timeout_s} s")
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return DistributedContext(0, 0, 1, torch.device("cuda" if cuda else "cpu"))
    missing = [name for name in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(f"RANK is set but {', '.join(missing)} is not: launch this with torchrun")
    rank, local_rank, world_size = (int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DistributedContext(rank, local_rank, world_size, device)


def cleanup_distributed() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def create_distributed_dataloader(
    txt: str,
    tokenizer,
    batch_size: int,
    max_length: int,
    stride: int,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """Like ``create_dataloader_v1``, but each process gets its own share of the chunks.

    A ``DistributedSampler`` shuffles all chunks with ``seed`` (plus the epoch, see
    ``sampler.set_epoch``) the same way on every process, then deals them out: process
    ``rank`` takes chunks ``rank, rank + world_size, ...``. ``batch_size`` is per process.
    Rank and world size default to the process group's (0 and 1 without one).
    """
    if rank is None:
        rank = dist.get_rank() if dist.is_initialized() else 0
    if world_size is None:
        world_size = dist.get_world_size() if dist.is_initialized() else 1
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    # drop_last: every process must take the same number of steps, or the others wait forever.
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
    )
    pin_memory = torch.cuda.is_available()  # page-locked batches copy to the GPU faster
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, pin_memory=pin_memory)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m reference_impl.distributed",
        description="Pretrain a small GPT on a text file (the-verdict.txt by default) with "
        "DistributedDataParallel: N processes, each on its share of every batch.",
    )
    default = "(default: %(default)s)"
    data = parser.add_argument_group("data")
    data.add_argument("--text-file", type=Path, help="training text (default: the course's the-verdict.txt)")
    data.add_argument("--train-ratio", type=float, default=0.9, help=f"share of the text to train on {default}")
    data.add_argument("--batch-size", type=int, default=2, help=f"sequences per batch in EACH process {default}")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", help='a GPT-2 size instead of the three below, e.g. "gpt2-small" (the book\'s 124M)')
    model.add_argument("--emb-dim", type=int, default=128, help=default)
    model.add_argument("--n-heads", type=int, default=4, help=default)
    model.add_argument("--n-layers", type=int, default=4, help=default)
    model.add_argument("--context-length", type=int, default=128, help=f"tokens per training sequence {default}")
    model.add_argument("--drop-rate", type=float, default=0.1, help=default)
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10, help=default)
    train.add_argument("--lr", type=float, default=4e-4, help=f"AdamW's learning rate, a schedule's peak {default}")
    train.add_argument("--weight-decay", type=float, default=0.1, help=default)
    train.add_argument("--warmup-steps", type=int, default=0, help=f"steps of warm-up from --initial-lr {default}")
    train.add_argument("--initial-lr", type=float, help="learning rate at the first warm-up step")
    train.add_argument("--cosine-decay", action="store_true", help="then decay to --min-lr along a cosine")
    train.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    train.add_argument("--grad-clip", type=float, help="clip the gradient norm to this after the warm-up")
    train.add_argument("--seed", type=int, default=123, help=default)
    train.add_argument(
        "--fast", action="store_true", help="the fast path (reference_impl.fast): bfloat16 where native, fused loss..."
    )
    train.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="with --fast: bfloat16 autocast where the device has it natively (auto), always (on: emulated, "
        "slow, where it has not), or never (off) (default: auto)",
    )
    train.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds a process waits for the others before failing (a stuck rank) {default}",
    )
    report = parser.add_argument_group("reporting")
    report.add_argument("--eval-freq", type=int, default=5, help=f"evaluate every this many steps {default}")
    report.add_argument("--eval-iter", type=int, default=5, help=f"batches per evaluation {default}")
    report.add_argument(
        "--start-context", default="Every effort moves you", help="prompt of the sample printed after each epoch"
    )
    report.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    report.add_argument("--save", type=Path, help="write a checkpoint here at the end (rank 0 does)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.train_ratio < 1:
        parser.error(f"--train-ratio must be between 0 and 1, got {args.train_ratio}")
    if args.bf16 != "auto" and not args.fast:
        parser.error("--bf16 chooses the fast path's precision: add --fast")
    ctx = setup_distributed(timeout_s=args.timeout)
    try:
        _train(args, ctx)
    finally:
        cleanup_distributed()


def _train(args: argparse.Namespace, ctx: DistributedContext) -> None:
    from .download import read_text
    from .tokenizer import get_tokenizer

    text = args.text_file.read_text(encoding="utf-8") if args.text_file else read_text("the-verdict.txt")
    tokenizer = get_tokenizer("gpt2")
    split = int(args.train_ratio * len(text))
    cfg = _model_config(args, tokenizer.n_vocab)

    # Same seed everywhere: every process builds the same model (DDP also copies rank 0's weights to all).
    torch.manual_seed(args.seed)
    train_loader = create_distributed_dataloader(
        text[:split], tokenizer, args.batch_size, cfg.context_length, cfg.context_length,
        rank=ctx.rank, world_size=ctx.world_size, shuffle=True, seed=args.seed,
    )  # fmt: skip
    # Only rank 0 evaluates, on the whole validation text.
    val_loader = DataLoader(
        GPTDatasetV1(text[split:], tokenizer, cfg.context_length, cfg.context_length),
        batch_size=args.batch_size, shuffle=False, drop_last=False,
    )  # fmt: skip
    model = GPTModel(cfg).to(ctx.device)
    if ctx.world_size > 1:
        model = DDP(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    # fused=True: one kernel for the whole update, 7-15% faster training on CPU (benchmarks/README.md)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=True)

    if ctx.is_main:
        print(f"{ctx.world_size} process(es) on {ctx.device.type}, {len(train_loader)} steps per epoch, "
              f"global batch {args.batch_size * ctx.world_size}")  # fmt: skip
    train_model_simple(
        model, train_loader, val_loader, optimizer, ctx.device,
        num_epochs=args.epochs, eval_freq=args.eval_freq, eval_iter=args.eval_iter,
        start_context=args.start_context, tokenizer=tokenizer,
        warmup_steps=args.warmup_steps, initial_lr=args.initial_lr, min_lr=args.min_lr,
        cosine_decay=args.cosine_decay, grad_clip=args.grad_clip, show_progress=not args.no_progress,
        fast=_fast_path(args, ctx.device),
    )  # fmt: skip
    if ctx.is_main and args.save:
        save_checkpoint(args.save, model, optimizer, cfg=cfg, epochs=args.epochs)
        print(f"checkpoint saved to {args.save}")


def _fast_path(args: argparse.Namespace, device: torch.device) -> FastPath | None:
    """The fast path ``--fast`` and ``--bf16`` ask for (None without --fast)."""
    if not args.fast:
        return None
    chosen = FastPath.for_device(device)
    if args.bf16 != "auto":
        chosen = dataclasses.replace(chosen, bf16=args.bf16 == "on")
    return chosen


def _model_config(args: argparse.Namespace, vocab_size: int) -> GPTConfig:
    sizes = dict(
        context_length=args.context_length, drop_rate=args.drop_rate, vocab_size=vocab_size,
    )  # fmt: skip
    if args.preset:
        return GPTConfig.from_preset(args.preset, **sizes)
    return GPTConfig(emb_dim=args.emb_dim, n_heads=args.n_heads, n_layers=args.n_layers, **sizes)


if __name__ == "__main__":
    main()
