#!/usr/bin/env python
"""Measure one candidate speed-up at a time: training steps of variants, taking turns.

    .venv/bin/python benchmarks/ab_variants.py ours ours+foreach hf hf+foreach
    .venv/bin/python benchmarks/ab_variants.py ours ours+malloc hf hf+malloc --rounds 6
    .venv/bin/python benchmarks/ab_variants.py --small ours ours+compile

A variant is a model (``ours``, ``book``, ``hf``, as in ``bench_gpt.py``) plus tweaks:

* ``+foreach``    AdamW's multi-tensor ("foreach") implementation instead of the fused one;
* ``+malloc``     glibc keeps freed memory for reuse (no ``mmap`` for big blocks), so the
                  vocabulary-sized tensors of every step do not page-fault afresh;
* ``+compile``    ``torch.compile`` the model (the first step, which compiles, is reported);
* ``+sparse-emb`` the tied token embedding sends a sparse gradient, which autograd adds to
                  the head's dense one (no 50257 x 768 tensor of zeros per step);
* ``+fused-loss`` ours computes head and cross-entropy in one autograd function that turns
                  the logits into their gradient in place (one vocabulary-sized tensor, not five).

Each variant lives in its own worker process (as in ``bench_gpt.py``) and they take turns
step by step, so that a change in the machine's load affects all of them alike. Prints the
median and best step time of each, and tokens/s relative to the first variant.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpt  # noqa: E402

TWEAKS = ("foreach", "malloc", "compile", "sparse-emb", "fused-loss")
_build_model, _make_optimizer, _train_step = bench_gpt.build_model, bench_gpt.make_optimizer, bench_gpt.train_step


def parse_variant(spec: str) -> tuple[str, set[str]]:
    kind, *tweaks = spec.split("+")
    if kind not in bench_gpt.KINDS:
        raise SystemExit(f"unknown model {kind!r} in {spec!r}; choose from {', '.join(bench_gpt.KINDS)}")
    unknown = set(tweaks) - set(TWEAKS)
    if unknown:
        raise SystemExit(f"unknown tweak {sorted(unknown)} in {spec!r}; choose from {', '.join(TWEAKS)}")
    if kind == "hf" and {"sparse-emb", "fused-loss"} & set(tweaks):
        raise SystemExit(f"{spec!r}: +sparse-emb and +fused-loss apply to our models (ours, book) only")
    if {"fused-loss", "compile"} <= set(tweaks):
        raise SystemExit(f"{spec!r}: +fused-loss does not go with +compile")
    return kind, set(tweaks)


def build_variant(spec: str, cfg, seed: int):
    """Runs in the variant's worker: the model, with the variant's tweaks applied."""
    kind, tweaks = parse_variant(spec)
    if "malloc" in tweaks:  # before the model exists, so that all its memory is affected
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
        libc.mallopt(M_MMAP_MAX, 0)  # never mmap: big blocks come from the heap and are reused
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 34)  # and are not handed back to the OS
    model = _build_model(kind, cfg, seed)
    if "sparse-emb" in tweaks:
        model.tok_emb.sparse = True  # the tied head's dense gradient absorbs it: AdamW sees a dense one
    if "compile" in tweaks:
        model = CompiledModel(model)
    model.ab_tweaks = tweaks  # for make_variant_optimizer
    return model


def make_variant_optimizer(model, settings):
    if "foreach" in model.ab_tweaks:
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)
    return _make_optimizer(model, settings)


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``x @ weight.T`` against ``targets``, with one (n, vocab) tensor.

    The forward pass computes the logits, and then, in place, their gradient
    (softmax - one_hot(target)) / n, which the backward pass only multiplies out.
    """

    @staticmethod
    def forward(ctx, x, weight, targets):
        logits = x @ weight.T
        target_logits = logits.gather(1, targets[:, None]).squeeze(1)
        maxes = logits.amax(dim=1, keepdim=True)
        probs = logits.sub_(maxes).exp_()  # in place from here on
        sums = probs.sum(dim=1, keepdim=True)
        loss = (sums.log().squeeze(1) + maxes.squeeze(1) - target_logits).mean()
        grad = probs.div_(sums)
        grad[torch.arange(len(targets)), targets] -= 1
        grad.div_(len(targets))
        ctx.save_for_backward(x, weight, grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, grad = ctx.saved_tensors
        return (grad @ weight) * grad_output, (grad.T @ x) * grad_output, None


def variant_train_step(model, optimizer, inputs, targets):
    if "fused-loss" not in model.ab_tweaks:
        return _train_step(model, optimizer, inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    positions = torch.arange(inputs.shape[1])
    x = model.drop_emb(model.tok_emb(inputs) + model.pos_emb(positions))
    x = model.final_norm(model.trf_blocks(x))
    loss = LinearCrossEntropy.apply(x.flatten(0, 1), model.out_head.weight, targets.flatten())
    loss.backward()
    optimizer.step()
    return loss.item()


def variant_logits(model, inputs):
    inner = model.model if isinstance(model, CompiledModel) else model
    if isinstance(inner, bench_gpt.GPTModel):
        return model(inputs)
    return model(input_ids=inputs, use_cache=False).logits


class CompiledModel(torch.nn.Module):
    """Wraps a model: ``torch.compile`` for the forward pass, the rest unchanged."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.compiled = torch.compile(model)

    def forward(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("variants", nargs="+", help="e.g. ours ours+foreach hf")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per variant (default 4)")
    parser.add_argument("--drop-rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    specs = list(dict.fromkeys(args.variants))
    for spec in specs:
        parse_variant(spec)
    settings = bench_gpt.settings_from_args(
        bench_gpt.parse_args(
            ["--threads", str(args.threads), "--drop-rate", str(args.drop_rate)] + (["--small"] if args.small else [])
        )
    )

    # The workers look these up in bench_gpt by name, so each builds its variant.
    bench_gpt.train_step = variant_train_step
    bench_gpt.build_model = build_variant
    bench_gpt.make_optimizer = make_variant_optimizer
    bench_gpt.model_logits = variant_logits

    workers = {spec: bench_gpt.Worker(spec, settings) for spec in specs}
    for worker in workers.values():
        worker.result()
    torch.set_num_threads(settings.threads)
    generator = torch.Generator().manual_seed(settings.seed)
    shape = (settings.batch_size, settings.seq_len)
    inputs = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    targets = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    seconds = {spec: [] for spec in specs}
    try:
        for round_index in range(1 + args.rounds):  # round 0 warms up (and compiles)
            for spec in bench_gpt.in_turns(specs, round_index):
                out = workers[spec].call("train_step", inputs, targets)
                if round_index == 0:
                    print(f"{spec}: first step {out['seconds']:.1f} s", file=sys.stderr, flush=True)
                else:
                    seconds[spec].append(out["seconds"])
    finally:
        for worker in workers.values():
            worker.stop()
    tokens = settings.batch_size * settings.seq_len
    reference = statistics.median(seconds[specs[0]])
    print(f"| variant | median step (s) | best step (s) | tokens/s (median) | vs {specs[0]} |")
    print("|---|---:|---:|---:|---:|")
    for spec in specs:
        median = statistics.median(seconds[spec])
        best = min(seconds[spec])
        print(f"| {spec} | {median:.2f} | {best:.2f} | {tokens / median:.1f} | {reference / median:.2f}x |")
    load = os.getloadavg()[0]
    print(
        f"\n{settings.threads} threads, {args.rounds} timed steps each, load average {load:.2f} at the end "
        f"(includes this run's own threads); steps: "
        + "; ".join(f"{spec} " + " ".join(f"{t:.2f}" for t in seconds[spec]) for spec in specs)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
