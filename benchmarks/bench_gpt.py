#!/usr/bin/env python
"""Benchmark the course's GPTModel against Hugging Face's GPT2LMHeadModel on this CPU.

    .venv/bin/python benchmarks/bench_gpt.py                  # GPT-2 small shape (124M)
    .venv/bin/python benchmarks/bench_gpt.py --small          # a tiny model, ~20 s (what CI runs)
    .venv/bin/python benchmarks/bench_gpt.py --json out.json  # also write every number as JSON

Models with the same configuration (GPT-2's sizes, tied embeddings, query/key/value
biases, dropout 0.1) and the same weights, copied from the Hugging Face model into ours:

* ``ours``:      ``reference_impl.model.GPTModel`` in float32, the book's code;
* ``ours_fast``: the same model through the fast path (``reference_impl.fast``, ``fast=True``):
  bfloat16 autocast where this CPU multiplies bfloat16 natively, head and loss fused, freed
  memory kept;
* ``hf``:        ``transformers.GPT2LMHeadModel`` in float32 (what a user gets by default);
* ``hf_fast``:   the same, under the same autocast as ``ours_fast`` (its own fast setting);
* ``book`` (``--book``): ours with chapter 3's step-by-step ``MultiHeadAttention`` in every block.

Before timing, it checks that they compute the same logits (and stops if they do not).
Then it measures, on the same inputs:

* training tokens/s: forward + cross-entropy + backward + AdamW step, the median of
  ``--steps`` steps after ``--warmup`` steps, the models taking turns step by step, so that
  a change in the machine's load affects all of them alike;
* MFU: the fraction of the peak matmul rate of the precision used (measured here with a
  large matmul) that the training reaches, counting 6 N + 12 n_layers emb_dim T FLOPs per token;
* greedy decoding tokens/s (batch 1): ours with and without the KV cache, and HF's
  ``generate(do_sample=False, use_cache=True)``, which must produce the same tokens;
* peak memory: the resident set (RSS) high-water mark of each model's process per phase.

Each model lives in its own worker process (forked, so the libraries are imported once);
the parent only sends commands. That keeps each process's RSS its own model's; see
``benchmarks/README.md`` for how memory is measured and what the profile showed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from reference_impl.attention import MultiHeadAttention
from reference_impl.fast import FastPath, native_bf16, set_keep_freed_memory
from reference_impl.generate import generate
from reference_impl.model import GPTConfig, GPTModel, count_parameters
from reference_impl.train import fast_loss_function

# The Hugging Face side is imported lazily (transformers takes seconds to import) in
# load_transformers(); its version goes in the report.

KINDS = ("ours", "ours_fast", "book", "hf", "hf_fast")
DEFAULT_KINDS = ("ours", "ours_fast", "hf", "hf_fast")
LABELS = {
    "ours": "ours fp32",
    "ours_fast": "ours, fast path",
    "book": "ours fp32, book attention",
    "hf": "HF GPT2LMHeadModel fp32",
    "hf_fast": "HF, same autocast",
}

# A tiny configuration for CI: every code path, in seconds.
SMALL = GPTConfig(
    vocab_size=512,
    context_length=128,
    emb_dim=64,
    n_heads=4,
    n_layers=2,
    drop_rate=0.1,
    qkv_bias=True,
    tie_embeddings=True,
)


@dataclasses.dataclass(frozen=True)
class Settings:
    cfg: GPTConfig
    batch_size: int = 2
    seq_len: int = 256
    prompt_len: int = 32
    new_tokens: int = 96
    steps: int = 5
    warmup: int = 1
    decode_repeats: int = 3
    threads: int = 2
    optimizer: str = "fused"  # AdamW implementation: "fused" (HF Trainer's default) or "foreach"
    lr: float = 4e-4
    weight_decay: float = 0.1
    seed: int = 123
    peak_matmul_size: int = 2048
    kinds: tuple[str, ...] = DEFAULT_KINDS
    uncached_decode: bool = True
    bf16: bool | None = None  # the fast kinds' autocast: None = where this CPU has native bfloat16

    def fast_path(self, kind: str) -> FastPath | None:
        """What a kind runs with: None for the float32 ones; HF's fast kind gets only the autocast."""
        if not kind.endswith("_fast"):
            return None
        bf16 = native_bf16("cpu") if self.bf16 is None else self.bf16
        if kind == "hf_fast":
            return FastPath("cpu", bf16=bf16, fused_loss=False, fused_optimizer=False, keep_freed_memory=False)
        return FastPath("cpu", bf16=bf16)


# ---------------------------------------------------------------------------------------
# Models: the same weights in three implementations
# ---------------------------------------------------------------------------------------


def load_transformers():
    """Import transformers quietly (it warns about missing TensorFlow etc.)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def hf_config(cfg: GPTConfig):
    """The ``GPT2Config`` equal to our ``cfg``; GPT-2 has biases and tied embeddings, so must cfg."""
    if not (cfg.qkv_bias and cfg.tie_embeddings):
        raise ValueError(
            "GPT2LMHeadModel has query/key/value biases and a tied head: use qkv_bias=True, tie_embeddings=True"
        )
    transformers = load_transformers()
    last_id = cfg.vocab_size - 1  # GPT-2's <|endoftext|> is its last token; keep that for any vocabulary size
    return transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.context_length,
        n_embd=cfg.emb_dim,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        resid_pdrop=cfg.drop_rate,
        embd_pdrop=cfg.drop_rate,
        attn_pdrop=cfg.drop_rate,
        tie_word_embeddings=True,
        bos_token_id=last_id,
        eos_token_id=last_id,
    )


def build_hf_model(cfg: GPTConfig, seed: int):
    """A randomly initialised ``GPT2LMHeadModel`` (the same weights for the same seed)."""
    transformers = load_transformers()
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(hf_config(cfg))


def split_fused_qkv(state_dict: dict) -> dict:
    """Our fused ``att.qkv`` tensors, split into the book's ``W_query``, ``W_key``, ``W_value``."""
    split = {}
    for key, tensor in state_dict.items():
        if ".att.qkv." in key:
            for part, chunk in zip(("W_query", "W_key", "W_value"), tensor.chunk(3, dim=0)):
                split[key.replace("qkv", part)] = chunk
        else:
            split[key] = tensor
    return split


def book_attention_model(cfg: GPTConfig) -> GPTModel:
    """``GPTModel`` whose blocks use chapter 3's ``MultiHeadAttention`` (separate Q, K, V, explicit mask)."""
    model = GPTModel(cfg)
    for block in model.trf_blocks:
        block.att = MultiHeadAttention(
            cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.drop_rate, cfg.n_heads, qkv_bias=cfg.qkv_bias
        )
    return model


def ours_from_hf(hf_model, cfg: GPTConfig, book_attention: bool = False) -> GPTModel:
    """Our model holding the Hugging Face model's weights."""
    from reference_impl.weights import gpt2_state_dict_to_ours

    state = gpt2_state_dict_to_ours(hf_model.state_dict(), cfg.n_layers)
    if book_attention:
        model, state = book_attention_model(cfg), split_fused_qkv(state)
    else:
        model = GPTModel(cfg)
    model.load_state_dict(state, strict=True)
    return model


def build_model(kind: str, cfg: GPTConfig, seed: int):
    kind = kind.removesuffix("_fast")  # the fast kinds are the same models, run differently
    hf_model = build_hf_model(cfg, seed)
    if kind == "hf":
        return hf_model
    return ours_from_hf(hf_model, cfg, book_attention=(kind == "book"))


# ---------------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------------


def flops_per_token(cfg: GPTConfig, seq_len: int) -> int:
    """Training FLOPs per token: 6 N + 12 n_layers emb_dim T (PaLM's appendix B, nanoGPT's MFU).

    N counts the weights that take part in matrix products: all parameters except the position
    embedding (a lookup) and, when the head is not tied, the token embedding (a lookup too);
    a tied embedding counts once, as the output head. 6 N: 2 FLOPs per weight and token in
    the forward pass, 4 in the backward. The second term is attention's QK^T and AV products
    over T = seq_len positions (without halving for the causal mask, by convention).
    """
    with torch.device("meta"):  # shapes only, no memory
        model = GPTModel(cfg)
    n = count_parameters(model) - model.pos_emb.weight.numel()
    if not cfg.tie_embeddings:
        n -= model.tok_emb.weight.numel()
    return 6 * n + 12 * cfg.n_layers * cfg.emb_dim * seq_len


def train_step(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor, fast: FastPath | None = None) -> float:
    """One optimisation step on next-token cross-entropy: forward, loss, backward, AdamW.

    Ours computes its loss as ``train_model_simple`` does (the book's ``calc_loss_batch`` in
    float32, the fast path's loss with ``fast``); HF's is the same cross-entropy of its logits.
    """
    optimizer.zero_grad(set_to_none=True)
    if isinstance(model, GPTModel):
        loss = fast_loss_function(fast)(inputs, targets, model, "cpu")
    else:
        with fast.autocast() if fast else contextlib.nullcontext():
            logits = model_logits(model, inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    loss.backward()
    optimizer.step()
    return loss.item()


def model_logits(model, inputs: torch.Tensor) -> torch.Tensor:
    if isinstance(model, GPTModel):
        return model(inputs)
    # use_cache=False: training needs no key/value cache (HF would otherwise build one).
    return model(input_ids=inputs, use_cache=False).logits


def make_optimizer(model, settings: Settings) -> torch.optim.Optimizer:
    choice = {"fused": {"fused": True}, "foreach": {"foreach": True}}[settings.optimizer]
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, **choice)


@torch.no_grad()
def greedy_decode(model, prompt: torch.Tensor, new_tokens: int, use_cache: bool, fast: FastPath | None = None):
    """``new_tokens`` greedy tokens after ``prompt``: ours through ``generate``, HF through its ``generate``."""
    if isinstance(model, GPTModel):
        return generate(model, prompt, new_tokens, use_cache=use_cache, fast=fast or False)[:, prompt.shape[1] :]
    with fast.autocast() if fast else contextlib.nullcontext():
        out = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=use_cache,
            pad_token_id=model.config.eos_token_id,
        )
    return out[:, prompt.shape[1] :]


def measure_peak_matmul(size: int, repeats: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """The best matmul rate of ``repeats`` (size x size) products in ``dtype``, in FLOP/s."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ---------------------------------------------------------------------------------------
# Memory: the high-water mark of the resident set, per phase
# ---------------------------------------------------------------------------------------


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def release_free_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS, so RSS shows what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: RSS may include freed memory the allocator keeps


def reset_peak_rss() -> bool:
    """Restart the RSS high-water mark from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The RSS high-water mark since the last reset (or since the process started), in MiB."""
    peak = _proc_status_mb("VmHWM")
    if peak is None:  # no /proc: the lifetime peak from getrusage (kB on Linux, bytes on macOS)
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss / 1024**2 if sys.platform == "darwin" else maxrss / 1024
    return peak


def rss_mb() -> float:
    return _proc_status_mb("VmRSS") or float("nan")


# ---------------------------------------------------------------------------------------
# Workers: one process per model, driven step by step by the parent
# ---------------------------------------------------------------------------------------


def _worker_main(kind: str, settings: Settings, conn) -> None:
    """Build one model, then answer the parent's commands until told to stop."""
    try:
        torch.set_num_threads(settings.threads)
        fast = settings.fast_path(kind)
        if fast is not None and fast.keep_freed_memory:  # for the worker's whole life, before the model exists
            set_keep_freed_memory(True)
        model = build_model(kind, settings.cfg, settings.seed)
        release_free_memory()  # the Hugging Face copy our models were built from
        state = {"model": model, "optimizer": None, "fast": fast}
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)  # HF's only
        conn.send(("ok", {"rss_mb": rss_mb(), "params": count_parameters(model), "attn_implementation": attn}))
        while True:
            command, args = conn.recv()
            if command == "stop":
                return
            conn.send(("ok", _handle(command, args, state, settings)))
    except Exception:  # report to the parent instead of dying silently
        conn.send(("error", traceback.format_exc()))


def _handle(command: str, args: tuple, state: dict, settings: Settings):
    model = state["model"]
    if command == "start_phase":  # measure memory from here
        release_free_memory()
        return {"tracked": reset_peak_rss(), "rss_mb": rss_mb()}
    if command == "end_phase":
        return {"peak_rss_mb": peak_rss_mb()}
    if command == "logits":
        (inputs,) = args
        model.eval()
        with torch.no_grad():
            return model_logits(model, inputs)
    if command == "decode":
        prompt, new_tokens, use_cache = args
        model.eval()
        start = time.perf_counter()
        tokens = greedy_decode(model, prompt, new_tokens, use_cache, state["fast"])
        return {"seconds": time.perf_counter() - start, "tokens": tokens}
    if command == "train_step":
        inputs, targets = args
        model.train()
        if state["optimizer"] is None:
            state["optimizer"] = make_optimizer(model, settings)
        start = time.perf_counter()
        loss = train_step(model, state["optimizer"], inputs, targets, state["fast"])
        return {"seconds": time.perf_counter() - start, "loss": loss}
    if command == "end_training":  # drop gradients and optimizer state
        state["optimizer"] = None
        model.zero_grad(set_to_none=True)
        release_free_memory()
        return {}
    raise ValueError(f"unknown command {command!r}")


class Worker:
    """The parent's handle on a model's process."""

    def __init__(self, kind: str, settings: Settings):
        self.kind = kind
        context = multiprocessing.get_context("fork")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(kind, settings, child_conn), daemon=True)
        self.process.start()

    def result(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.kind} worker exited without answering (killed? out of memory?)") from None
        if status == "error":
            raise RuntimeError(f"the {self.kind} worker failed:\n{value}")
        return value

    def call(self, command: str, *args):
        self.conn.send((command, args))
        return self.result()

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send(("stop", ()))
        self.process.join(timeout=30)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def machine_info() -> dict:
    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": load_transformers().__version__,
        "python": platform.python_version(),
    }


def load_warning(load: float) -> str | None:
    if load > 0.5:
        return (
            f"WARNING: the machine is busy before the benchmark starts (1-minute load average {load:.2f} "
            f"on {os.cpu_count()} cores): absolute timings are unreliable. The ratios are measured with "
            "the models taking turns step by step, which makes them more robust, not exact."
        )
    return None


def in_turns(kinds, round_index: int):
    """``kinds`` rotated by the round, so no model always runs right after another."""
    shift = round_index % len(kinds)
    return kinds[shift:] + kinds[:shift]


def run(settings: Settings, log=print) -> dict:
    cfg = settings.cfg
    load_before = os.getloadavg()[0]
    warning = load_warning(load_before)
    if warning:
        log(warning)
    info = machine_info()
    base_rss = rss_mb()  # the libraries, before any model: every worker starts from this

    # Fork every worker before this process runs any parallel (OpenMP) kernel: a child
    # forked after that can hang in its first parallel region.
    workers = {kind: Worker(kind, settings) for kind in settings.kinds}
    try:
        built = {kind: worker.result() for kind, worker in workers.items()}
        torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        memory_method = (
            "RSS high-water mark (VmHWM), reset at the start of each phase"
            if reset_peak_rss()
            else "the process's lifetime RSS peak (getrusage), not reset per phase"
        )
        results = {
            "settings": _settings_dict(settings),
            "machine": info,
            "load_before": load_before,
            "warning": warning,
            "baseline_rss_mb": base_rss,
            "memory_method": memory_method,
            "attn_implementation": built.get("hf", {}).get("attn_implementation"),
            "params": built[settings.kinds[0]]["params"],
            "flops_per_token": flops_per_token(cfg, settings.seq_len),
        }
        log(
            f"{cfg.n_layers} layers, emb_dim {cfg.emb_dim}, vocab {cfg.vocab_size}: "
            f"{results['params'] / 1e6:.1f}M parameters; {settings.threads} threads; load average {load_before:.2f}"
        )

        results["correctness"] = check_same_function(workers, settings, generator)
        log(f"same logits: max |ours - HF| = {results['correctness']['max_abs_diff'].get('ours', float('nan')):.2e}")

        # The peak rates, measured before, between and after the phases: the best counts.
        fast = next((settings.fast_path(kind) for kind in settings.kinds if kind.endswith("_fast")), None)
        dtypes = [torch.float32] + ([torch.bfloat16] if fast is not None and fast.bf16 else [])
        peaks = {dtype: [measure_peak_matmul(settings.peak_matmul_size, dtype=dtype)] for dtype in dtypes}
        results["decode"] = measure_decoding(workers, settings, generator, log)
        for dtype in dtypes:
            peaks[dtype].append(measure_peak_matmul(settings.peak_matmul_size, dtype=dtype))
        results["training"] = measure_training(workers, settings, generator, log)
        for dtype in dtypes:
            peaks[dtype].append(measure_peak_matmul(settings.peak_matmul_size, dtype=dtype))
        results["peak_matmul_flops"] = max(peaks[torch.float32])
        results["peak_matmul_flops_bf16"] = max(peaks[torch.bfloat16]) if torch.bfloat16 in peaks else None
        results["fast_path"] = fast.describe() if fast is not None else None
        results["fast_bf16"] = bool(fast is not None and fast.bf16)
        for kind, train in results["training"].items():
            kind_fast = settings.fast_path(kind)
            peak = results["peak_matmul_flops_bf16"] if kind_fast and kind_fast.bf16 else results["peak_matmul_flops"]
            train["mfu"] = train["tokens_per_s"] * results["flops_per_token"] / peak
        results.update(speedups(results))
        results["load_after"] = os.getloadavg()[0]
        return results
    finally:
        for worker in workers.values():
            worker.stop()


def speedups(results: dict) -> dict:
    """The headline ratios (None where a model was not run)."""
    train, decode = results["training"], results["decode"]

    def ratio(table, ours, theirs):
        if ours not in table or theirs not in table:
            return None
        return table[ours]["tokens_per_s"] / table[theirs]["tokens_per_s"]

    return {
        "train_speedup_vs_hf_fp32": ratio(train, "ours_fast", "hf"),
        "train_speedup_vs_hf_same_precision": ratio(train, "ours_fast", "hf_fast"),
        "train_speedup_fp32_vs_hf_fp32": ratio(train, "ours", "hf"),
        "decode_speedup_vs_hf_fp32": ratio(decode, "ours_fast_cache", "hf_cache"),
        "decode_speedup_vs_hf_same_precision": ratio(decode, "ours_fast_cache", "hf_fast_cache"),
        "decode_speedup_fp32_vs_hf_fp32": ratio(decode, "ours_cache", "hf_cache"),
    }


def check_same_function(workers: dict, settings: Settings, generator: torch.Generator) -> dict:
    """Every model must give the same logits (eval mode) as HF's; raises if not."""
    tokens = min(64, settings.seq_len)
    inputs = torch.randint(0, settings.cfg.vocab_size, (1, tokens), generator=generator)
    logits = {kind: worker.call("logits", inputs) for kind, worker in workers.items()}
    reference = logits.get("hf", logits[next(iter(logits))])
    diffs = {kind: (value - reference).abs().max().item() for kind, value in logits.items() if kind != "hf"}
    for kind, value in logits.items():
        # float32 round-off: the models multiply in different orders (fused vs separate QKV, ...)
        torch.testing.assert_close(
            value, reference, atol=1e-4, rtol=1e-4, msg=lambda m, k=kind: f"{k} and HF compute different logits: {m}"
        )
    return {"max_abs_diff": diffs, "logits_scale": reference.abs().max().item(), "tokens": tokens}


def measure_decoding(workers: dict, settings: Settings, generator: torch.Generator, log) -> dict:
    prompt = torch.randint(0, settings.cfg.vocab_size, (1, settings.prompt_len), generator=generator)
    runs = [(kind, True) for kind in workers if kind != "book"]
    seconds = {run: [] for run in runs}
    tokens, memory = {}, {}
    for run in runs:
        workers[run[0]].call("start_phase")
    for repeat in range(1 + settings.decode_repeats):  # the first is a warm-up
        for kind, use_cache in in_turns(runs, repeat):
            out = workers[kind].call("decode", prompt, settings.new_tokens, use_cache)
            if repeat > 0:
                seconds[(kind, use_cache)].append(out["seconds"])
            tokens[(kind, use_cache)] = out["tokens"]
    for kind, use_cache in runs:
        memory[(kind, use_cache)] = workers[kind].call("end_phase")["peak_rss_mb"]
    if settings.uncached_decode and "ours" in workers:  # slow: once, after a short warm-up
        worker = workers["ours"]
        worker.call("start_phase")
        worker.call("decode", prompt, 2, False)
        out = worker.call("decode", prompt, settings.new_tokens, False)
        seconds[("ours", False)] = [out["seconds"]]
        tokens[("ours", False)] = out["tokens"]
        memory[("ours", False)] = worker.call("end_phase")["peak_rss_mb"]

    reference = tokens.get(("hf", True))
    results = {}
    for (kind, use_cache), times in seconds.items():
        name = f"{kind}_{'cache' if use_cache else 'no_cache'}"
        got = tokens[(kind, use_cache)]
        same = None if reference is None else bool(torch.equal(got, reference))
        agreement = None if reference is None else (got == reference).float().mean().item()
        results[name] = {
            "tokens_per_s": settings.new_tokens / statistics.median(times),
            "best_tokens_per_s": settings.new_tokens / min(times),
            "seconds": times,
            "peak_rss_mb": memory[(kind, use_cache)],
            "same_tokens_as_hf": same,
            "token_agreement_with_hf": agreement,  # share of positions where the greedy tokens are equal
        }
        log(f"decode {name:14s} {results[name]['tokens_per_s']:7.1f} tokens/s")
    return results


def measure_training(workers: dict, settings: Settings, generator: torch.Generator, log) -> dict:
    shape = (settings.batch_size, settings.seq_len)
    inputs = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    targets = torch.randint(0, settings.cfg.vocab_size, shape, generator=generator)
    kinds = list(workers)
    seconds = {kind: [] for kind in kinds}
    for kind in kinds:
        workers[kind].call("start_phase")
    for step in range(settings.warmup + settings.steps):
        this_step = {}
        for kind in in_turns(kinds, step):
            this_step[kind] = workers[kind].call("train_step", inputs, targets)["seconds"]
            if step >= settings.warmup:
                seconds[kind].append(this_step[kind])
        warm_up = " (warm-up)" if step < settings.warmup else ""
        log(
            f"training step {step + 1}/{settings.warmup + settings.steps}{warm_up}: "
            + ", ".join(f"{kind} {this_step[kind]:.2f}s" for kind in kinds)
        )
    tokens = settings.batch_size * settings.seq_len
    results = {}
    for kind in kinds:
        peak = workers[kind].call("end_phase")["peak_rss_mb"]
        workers[kind].call("end_training")
        results[kind] = {
            "tokens_per_s": tokens / statistics.median(seconds[kind]),
            "best_tokens_per_s": tokens / min(seconds[kind]),
            "seconds": seconds[kind],
            "peak_rss_mb": peak,
        }
    return results


def _settings_dict(settings: Settings) -> dict:
    out = dataclasses.asdict(settings)
    out["cfg"] = dataclasses.asdict(settings.cfg)
    return out


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "–"
    return f"{ours / theirs:.2f}x"


def format_table(results: dict) -> str:
    """The Markdown table: one column per model, then the fast path's ratios against Hugging Face's."""
    train, decode = results["training"], results["decode"]
    kinds = [kind for kind in KINDS if kind in train]

    def cell(value, fmt):
        return "–" if value is None else format(value, fmt)

    def row(name, values, fmt):
        cells = " | ".join(cell(values.get(kind), fmt) for kind in kinds)
        ratios = " | ".join(_ratio(values.get("ours_fast"), values.get(base)) for base in ("hf", "hf_fast"))
        return f"| {name} | {cells} | {ratios} |"

    def train_row(name, key, fmt, scale=1.0):
        return row(name, {kind: train[kind][key] * scale for kind in kinds}, fmt)

    def decode_row(name, key, fmt, suffix="_cache"):
        return row(name, {kind: decode[kind + suffix][key] for kind in kinds if kind + suffix in decode}, fmt)

    attn = results.get("attn_implementation") or "?"
    labels = [LABELS[kind] + (f" (attn: {attn})" if kind == "hf" else "") for kind in kinds]
    uncached = decode.get("ours_no_cache", {}).get("tokens_per_s")
    rows = [
        f"| measurement | {' | '.join(labels)} | ours fast / HF fp32 | ours fast / HF same precision |",
        "|---|" + "---:|" * (len(kinds) + 2),
        train_row("training tokens/s (median step)", "tokens_per_s", ".1f"),
        train_row("training tokens/s (best step)", "best_tokens_per_s", ".1f"),
        train_row("training MFU (median step, % of the precision's peak matmul)", "mfu", ".1f", 100.0),
        train_row("training peak RSS (MiB)", "peak_rss_mb", ".0f"),
        decode_row("greedy decode tokens/s, KV cache (median)", "tokens_per_s", ".1f"),
        decode_row("greedy decode tokens/s, KV cache (best)", "best_tokens_per_s", ".1f"),
        decode_row("greedy tokens equal to HF fp32's (share)", "token_agreement_with_hf", ".2f"),
        decode_row("decode peak RSS (MiB), KV cache", "peak_rss_mb", ".0f"),
    ]
    diffs = results["correctness"]["max_abs_diff"]
    settings = results["settings"]
    bf16_peak = results.get("peak_matmul_flops_bf16")
    notes = [
        "",
        f"Fast path: {results.get('fast_path') or 'not run'}. "
        f"Training: batch {settings['batch_size']} x {settings['seq_len']} tokens, "
        f"dropout {settings['cfg']['drop_rate']}, "
        f"AdamW ({settings['optimizer']}) for every model, median of {settings['steps']} steps after "
        f"{settings['warmup']} warm-up, models taking turns. "
        f"FLOPs/token = 6N + 12 L d T = {results['flops_per_token'] / 1e6:.1f}M; "
        f"peak matmul {results['peak_matmul_flops'] / 1e9:.1f} GFLOP/s in fp32"
        + (f", {bf16_peak / 1e9:.1f} in bf16" if bf16_peak else "")
        + f", so at most {results['peak_matmul_flops'] / results['flops_per_token']:.0f} tokens/s in fp32 "
        "if all the work ran at that rate.",
        f"Decoding: batch 1, {settings['prompt_len']}-token prompt, {settings['new_tokens']} new tokens, greedy, "
        f"median of {settings['decode_repeats']}"
        + (f"; ours fp32 without the KV cache: {uncached:.1f} tokens/s (1 run)." if uncached else "."),
        "Same weights, same logits (fp32): max |ours - HF| = "
        + ", ".join(f"{diffs[k]:.1e} ({k})" for k in diffs)
        + f" (logits up to {results['correctness']['logits_scale']:.2f}).",
        f"Peak memory: {results['memory_method']}, of each model's own process; it includes "
        f"{results['baseline_rss_mb']:.0f} MiB of imported libraries (torch, transformers).",
        f"Load average: {results['load_before']:.2f} before, {results['load_after']:.2f} after "
        f"(the latter includes this benchmark's own {settings['threads']} threads).",
    ]
    if results.get("warning"):
        notes.append(results["warning"])
    return "\n".join(rows + notes)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="gpt2-small", help="a GPTConfig preset (default: gpt2-small, 124M)")
    parser.add_argument("--small", action="store_true", help="a tiny model that runs in seconds (for CI)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per model (default 2)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 5; 3 with --small)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first (default 1)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 2)")
    parser.add_argument("--seq-len", type=int, help="training sequence length (default 256; 64 with --small)")
    parser.add_argument("--new-tokens", type=int, help="tokens to decode (default 96; 24 with --small)")
    parser.add_argument("--decode-repeats", type=int, default=3, help="timed decoding runs (default 3)")
    parser.add_argument(
        "--optimizer",
        choices=("fused", "foreach"),
        default="fused",
        help="AdamW implementation for every model (default fused, HF Trainer's default)",
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.1,
        help="dropout of every model (default 0.1, GPT-2's; with 0 SDPA uses its flash kernel)",
    )
    parser.add_argument("--book", action="store_true", help="also run ours with the book's attention (fp32)")
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="the fast kinds' bfloat16 autocast: auto (where the CPU has native bfloat16, default), on, off",
    )
    parser.add_argument("--no-uncached", action="store_true", help="skip decoding without the KV cache (slow)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    for name in ("threads", "steps", "batch_size", "seq_len", "new_tokens", "decode_repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.small:
        cfg = SMALL.replace(drop_rate=args.drop_rate)
        defaults = {"steps": 3, "seq_len": 64, "prompt_len": 8, "new_tokens": 24, "peak_matmul_size": 512}
    else:
        cfg = GPTConfig.from_preset(args.preset, qkv_bias=True, tie_embeddings=True, drop_rate=args.drop_rate)
        defaults = {}
    chosen = {
        name: getattr(args, name)
        for name in ("steps", "batch_size", "seq_len", "new_tokens")
        if getattr(args, name) is not None
    }
    settings = Settings(
        cfg=cfg,
        **{**defaults, **chosen},
        warmup=args.warmup,
        decode_repeats=args.decode_repeats,
        threads=args.threads,
        optimizer=args.optimizer,
        seed=args.seed,
        kinds=tuple(k for k in KINDS if k in DEFAULT_KINDS or (args.book and k == "book")),
        bf16={"auto": None, "on": True, "off": False}[args.bf16],
        uncached_decode=not args.no_uncached,
    )
    if settings.seq_len > cfg.context_length or settings.prompt_len + settings.new_tokens > cfg.context_length:
        raise SystemExit(f"the sequences do not fit the context length {cfg.context_length}")
    return settings


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    warnings.filterwarnings("ignore", message=".*generation flags.*")
    start = time.perf_counter()
    results = run(settings, log=lambda message: print(message, file=sys.stderr, flush=True))
    results["wall_s"] = time.perf_counter() - start
    print(format_table(results))
    print(f"(benchmark took {results['wall_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(_jsonable(results), indent=2))
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


if __name__ == "__main__":
    sys.exit(main())
