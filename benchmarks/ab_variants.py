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
* ``+bf16``       matrix products in bfloat16 (``torch.autocast``; fast only on CPUs with
                  AVX512-BF16 or AMX, ~100x slower elsewhere);
* ``+fused-loss`` ours computes head and cross-entropy in one step that turns the logits into
                  their gradient in place (``GPTModel(inputs, targets=...)``, the fast path's loss).

Each variant lives in its own worker process (as in ``bench_gpt.py``) and they take turns
step by step, so that a change in the machine's load affects all of them alike. Prints the
median and best step time of each, and tokens/s relative to the first variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpt  # noqa: E402

from reference_impl.fast import set_keep_freed_memory  # noqa: E402

AB_KINDS = ("ours", "book", "hf")
TWEAKS = ("foreach", "malloc", "compile", "sparse-emb", "fused-loss", "bf16")
# Chapter 5's small GPT (--chapter5): no biases, an untied head, so ours only (no HF twin).
CHAPTER5 = bench_gpt.GPTConfig.from_preset("gpt2-small (124M)").replace(
    context_length=256, emb_dim=128, n_heads=4, n_layers=4
)
_build_model, _make_optimizer, _train_step = bench_gpt.build_model, bench_gpt.make_optimizer, bench_gpt.train_step


def parse_variant(spec: str) -> tuple[str, set[str]]:
    kind, *tweaks = spec.split("+")
    if kind not in AB_KINDS:
        raise SystemExit(f"unknown model {kind!r} in {spec!r}; choose from {', '.join(AB_KINDS)}")
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
        set_keep_freed_memory(True)  # the fast path's setting, for the worker's whole life
    if cfg.qkv_bias and cfg.tie_embeddings:
        model = _build_model(kind, cfg, seed)
    elif kind == "hf":
        raise SystemExit("--chapter5's model has no Hugging Face twin (no biases, untied head): compare ours only")
    else:
        torch.manual_seed(seed)
        model = bench_gpt.GPTModel(cfg)
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


def variant_train_step(model, optimizer, inputs, targets, fast=None):
    # fast: what bench_gpt's workers pass, None for the kinds this script allows; tweaks decide here.
    tweaks = model.ab_tweaks
    if not {"fused-loss", "bf16"} & tweaks:
        return _train_step(model, optimizer, inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in tweaks):
        if "fused-loss" in tweaks:
            loss = model(inputs, targets=targets)  # reference_impl.fast.linear_cross_entropy
        else:
            loss = F.cross_entropy(variant_logits(model, inputs).flatten(0, 1).float(), targets.flatten())
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
    parser.add_argument("--chapter5", action="store_true", help="chapter 5's small GPT (4 layers, 128 wide), ours only")
    args = parser.parse_args(argv)
    specs = list(dict.fromkeys(args.variants))
    for spec in specs:
        parse_variant(spec)
    settings = bench_gpt.settings_from_args(
        bench_gpt.parse_args(
            ["--threads", str(args.threads), "--drop-rate", str(args.drop_rate)] + (["--small"] if args.small else [])
        )
    )

    if args.chapter5:
        settings = dataclasses.replace(settings, cfg=CHAPTER5.replace(drop_rate=args.drop_rate))
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
