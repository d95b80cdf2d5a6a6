#!/usr/bin/env python
"""Where does a training step's time go? torch.profiler on one step of each model.

    .venv/bin/python benchmarks/profile_step.py                   # GPT-2 small shape, ours and HF
    .venv/bin/python benchmarks/profile_step.py --small --top 15  # a tiny model, in seconds

Builds the same models as ``bench_gpt.py`` (same configuration, same weights), runs
``--warmup`` untimed steps, profiles one step (forward + cross-entropy + backward + AdamW)
and prints, per model, the self CPU time grouped into kinds of work (matrix products,
AdamW, dropout, ...) and the most expensive operators. Self times are wall-clock, so on a
busy machine each is inflated, but on average in proportion: compare the percentages.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpt  # noqa: E402  (the benchmark's models and training step)

# Operator name -> kind of work. The first matching rule wins; names are aten's.
CATEGORIES = [
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    (
        "attention (softmax, mask)",
        (
            "aten::_softmax",
            "aten::_softmax_backward_data",
            "aten::tril",
            "aten::triu",
            "aten::isneginf",
            "aten::where",
            "aten::masked_fill",
            "aten::logical_not",
            "aten::_scaled_dot_product_flash_attention",
            "aten::_safe_softmax",
        ),
    ),
    (
        "cross-entropy (log-softmax over the vocabulary)",
        (
            "aten::_log_softmax",
            "aten::_log_softmax_backward_data",
            "aten::nll_loss",
            "aten::nll_loss_forward",
            "aten::nll_loss_backward",
        ),
    ),
    (
        "AdamW",
        (
            "aten::_fused_adamw_",
            "aten::_foreach_",
            "aten::lerp_",
            "aten::addcdiv_",
            "aten::addcmul_",
            "aten::sqrt",
            "aten::_foreach",
        ),
    ),
    ("dropout (random masks)", ("aten::bernoulli_", "aten::native_dropout", "aten::div_")),
    ("GELU", ("aten::gelu", "aten::gelu_backward", "aten::tanh", "aten::tanh_backward", "aten::pow")),
    ("layer norm", ("aten::native_layer_norm", "aten::native_layer_norm_backward")),
    (
        "embeddings",
        (
            "aten::embedding",
            "aten::embedding_dense_backward",
            "aten::index_select",
            "aten::index_add_",
            "aten::embedding_backward",
        ),
    ),
    ("copies (contiguous, cat, transpose)", ("aten::copy_", "aten::cat", "aten::clone", "aten::stack")),
    ("sums (bias gradients)", ("aten::sum",)),
    (
        "other element-wise (mul, add, fill, ...)",
        ("aten::mul", "aten::add", "aten::fill_", "aten::zero_", "aten::div", "aten::sub", "aten::neg"),
    ),
]


def category(name: str) -> str:
    for kind, prefixes in CATEGORIES:
        if any(name == p or name.startswith(p + "_") or (p.endswith("_") and name.startswith(p)) for p in prefixes):
            return kind
    return "other"


def profile_step(kind: str, settings: bench_gpt.Settings):
    model = bench_gpt.build_model(kind, settings.cfg, settings.seed).train()
    optimizer = bench_gpt.make_optimizer(model, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    shape = (settings.batch_size, settings.seq_len)
    inputs = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    targets = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    for _ in range(settings.warmup):
        bench_gpt.train_step(model, optimizer, inputs, targets)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        bench_gpt.train_step(model, optimizer, inputs, targets)
    return prof.key_averages()


def summarise(averages, top: int) -> str:
    events = [e for e in averages if e.key.startswith("aten::") and e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in averages)
    by_kind = defaultdict(float)
    for e in events:
        by_kind[category(e.key)] += e.self_cpu_time_total
    by_kind["not an aten operator (Python, autograd, optimizer glue)"] = total - sum(by_kind.values())
    lines = [f"total self CPU time {total / 1e6:.2f} s", "", "| kind of work | share |", "|---|---:|"]
    lines += [f"| {kind} | {100 * t / total:.1f}% |" for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    lines += ["", "| operator | calls | self CPU | share |", "|---|---:|---:|---:|"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        lines.append(
            f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e3:.0f} ms | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a tiny model (seconds)")
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimizer", choices=("fused", "foreach"), default="fused")
    parser.add_argument("--models", default="ours,hf", help="comma-separated: ours, book, hf (default ours,hf)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=12, help="operators to list (default 12)")
    args = parser.parse_args(argv)
    bench_args = [
        "--threads",
        str(args.threads),
        "--optimizer",
        args.optimizer,
        "--warmup",
        str(args.warmup),
        "--preset",
        args.preset,
    ] + (["--small"] if args.small else [])
    settings = bench_gpt.settings_from_args(bench_gpt.parse_args(bench_args))
    torch.set_num_threads(settings.threads)
    for kind in args.models.split(","):
        if kind not in bench_gpt.KINDS:
            parser.error(f"unknown model {kind!r}; choose from {', '.join(bench_gpt.KINDS)}")
        print(
            f"\n### {bench_gpt.LABELS[kind]}: one training step, {settings.threads} threads, "
            f"AdamW ({settings.optimizer})\n"
        )
        print(summarise(profile_step(kind, settings), args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
