#!/usr/bin/env python
"""Chapter 5's default training run, end to end, in float32 and with the fast path.

    .venv/bin/python benchmarks/bench_chapter5.py                 # 2 rounds of both runs, ~4 min
    .venv/bin/python benchmarks/bench_chapter5.py --json out.json
    .venv/bin/python benchmarks/bench_chapter5.py --small         # 1 epoch on a slice, seconds (tests)

The run is the chapter's: "The Verdict" split 90/10, 256-token chunks in batches of 2, the
chapter's small GPT (4 layers, 128 wide, vocabulary 50257), AdamW (lr 2e-3, weight decay
0.1), 10 epochs, an evaluation of 5 batches of each loader every 5 steps and a 50-token
sample after each epoch, all seeded with 123, through ``reference_impl.train.train_model_simple``
(the chapter's loop, checked equal to it by the chapter itself). The chapter creates its
AdamW without ``fused=``, and so does this run; ``fast=True`` switches it.

Each run is a fresh Python process, so that one run's memory state does not help the
next; the runs take turns (fp32, fast, then fast, fp32, ...). Reported: the wall time of
``train_model_simple`` per run, the speed-up (median fp32 time / median fast time), and the
largest relative difference between the two runs' losses at any evaluation (the fast path
must stay within 2%). The float32 run's trained model then continues a few of the story's
openings greedily (50 tokens each) in float32, with ``fast=True`` and with bfloat16 forced
(``FastPath(bf16=True)``, emulated and slow where the CPU has no bfloat16): the share of
tokens equal to float32's is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ("Every effort moves you", "I HAD always thought Jack Gisburn", "The height of his glory", "Mrs. Gisburn")


def one_run(fast: bool, small: bool, threads: int) -> dict:
    """Train once in this process; return the time and the loss curves."""
    import torch

    from reference_impl.data import create_dataloader_v1
    from reference_impl.download import read_text
    from reference_impl.fast import FastPath
    from reference_impl.model import GPTConfig, GPTModel
    from reference_impl.tokenizer import get_tokenizer
    from reference_impl.train import train_model_simple

    torch.set_num_threads(threads)
    text = read_text("the-verdict.txt")
    if small:
        text = text[:4000]
    split = int(0.9 * len(text))
    cfg = (
        GPTConfig.from_preset("gpt2-small (124M)")
        .replace(context_length=256)
        .replace(emb_dim=128, n_heads=4, n_layers=4)
    )
    if small:
        cfg = cfg.replace(context_length=64)
    tokenizer = get_tokenizer("gpt2")
    torch.manual_seed(123)
    loader = dict(batch_size=2, max_length=cfg.context_length, stride=cfg.context_length, num_workers=0)
    train_loader = create_dataloader_v1(text[:split], drop_last=True, shuffle=True, tokenizer=tokenizer, **loader)
    val_loader = create_dataloader_v1(text[split:], drop_last=False, shuffle=False, tokenizer=tokenizer, **loader)
    torch.manual_seed(123)
    model = GPTModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    start = time.perf_counter()
    history = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=1 if small else 10,
        eval_freq=5, eval_iter=5, start_context="Every effort moves you", tokenizer=tokenizer,
        show_progress=False, fast=fast,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    result = {
        "fast": fast,
        "seconds": seconds,
        "train_losses": history.train_losses,
        "val_losses": history.val_losses,
        "fast_path": FastPath.for_device("cpu").describe() if fast else "float32, the book's code",
    }
    if not fast:
        result["greedy_agreement"] = greedy_agreement(model.eval(), tokenizer, 10 if small else 50)
    return result


def greedy_agreement(model, tokenizer, new_tokens: int) -> dict:
    """Share of greedy tokens equal to float32's, per way of decoding, over PROMPTS."""
    from reference_impl.fast import FastPath
    from reference_impl.generate import generate, text_to_token_ids

    ways = {"fast": True, "bf16_forced": FastPath("cpu", bf16=True)}
    equal = dict.fromkeys(ways, 0)
    for prompt in PROMPTS:
        ids = text_to_token_ids(prompt, tokenizer)
        reference = generate(model, ids, new_tokens)[0, ids.shape[1] :]
        for name, fast in ways.items():
            tokens = generate(model, ids, new_tokens, fast=fast)[0, ids.shape[1] :]
            equal[name] += int((tokens == reference).sum())
    return {name: count / (new_tokens * len(PROMPTS)) for name, count in equal.items()}


def run_in_fresh_process(fast: bool, small: bool, threads: int) -> dict:
    command = [sys.executable, __file__, "--one", "fast" if fast else "fp32", "--threads", str(threads)]
    if small:
        command.append("--small")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {'fast' if fast else 'fp32'} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_relative_difference(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise RuntimeError(f"the runs evaluated a different number of times: {len(a)} vs {len(b)}")
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each kind, taking turns (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="1 epoch on a slice of the text (for tests)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--one", choices=["fp32", "fast"], help=argparse.SUPPRESS)  # a single run, as JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one == "fast", args.small, args.threads)))
        return 0

    runs = {False: [], True: []}
    for round_index in range(args.rounds):
        for fast in (False, True) if round_index % 2 == 0 else (True, False):
            result = run_in_fresh_process(fast, args.small, args.threads)
            runs[fast].append(result)
            print(f"round {round_index + 1}: {'fast' if fast else 'fp32'} {result['seconds']:.1f} s", flush=True)
    fp32_seconds = statistics.median(r["seconds"] for r in runs[False])
    fast_seconds = statistics.median(r["seconds"] for r in runs[True])
    reference, fast_run = runs[False][0], runs[True][0]
    results = {
        "chapter5_fp32_seconds": [r["seconds"] for r in runs[False]],
        "chapter5_fast_seconds": [r["seconds"] for r in runs[True]],
        "chapter5_speedup": fp32_seconds / fast_seconds,
        "max_rel_diff_train_loss": largest_relative_difference(fast_run["train_losses"], reference["train_losses"]),
        "max_rel_diff_val_loss": largest_relative_difference(fast_run["val_losses"], reference["val_losses"]),
        "evaluations": len(reference["val_losses"]),
        "fp32_final_losses": [reference["train_losses"][-1], reference["val_losses"][-1]],
        "fast_final_losses": [fast_run["train_losses"][-1], fast_run["val_losses"][-1]],
        "fast_path": fast_run["fast_path"],
        "greedy_agreement_with_fp32": reference["greedy_agreement"],
        "threads": args.threads,
        "small": args.small,
        "load_average_after": os.getloadavg()[0],
    }
    print(f"{fast_run['fast_path']}")
    print(
        f"chapter 5 training: fp32 {fp32_seconds:.1f} s, fast {fast_seconds:.1f} s (medians of {args.rounds}): "
        f"{results['chapter5_speedup']:.2f}x faster"
    )
    print(
        f"losses at {results['evaluations']} evaluations: largest relative difference "
        f"{100 * results['max_rel_diff_train_loss']:.2f}% (training), {100 * results['max_rel_diff_val_loss']:.2f}% "
        f"(validation); final fp32 {results['fp32_final_losses'][0]:.3f}/{results['fp32_final_losses'][1]:.3f}, "
        f"fast {results['fast_final_losses'][0]:.3f}/{results['fast_final_losses'][1]:.3f}"
    )
    agreement = results["greedy_agreement_with_fp32"]
    print(
        f"greedy tokens equal to float32's ({len(PROMPTS)} prompts): fast=True {100 * agreement['fast']:.1f}%, "
        f"bfloat16 forced {100 * agreement['bf16_forced']:.1f}%"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    within = max(results["max_rel_diff_train_loss"], results["max_rel_diff_val_loss"]) <= 0.02
    if not within:
        print("FAILED: the fast path's losses differ from float32's by more than 2%", file=sys.stderr)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
