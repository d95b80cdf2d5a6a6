"""Turning a model's next-token predictions into text.

``generate_text_simple`` is chapter 4's greedy loop: run the whole sequence through
the model for every new token. ``generate`` adds temperature, top-k, a stop token
and a KV cache, which feeds the model only the newest token at each step.
"""

from __future__ import annotations

import contextlib

import torch

from . import fast as fast_path
from .model import GPTModel


def text_to_token_ids(text: str, tokenizer) -> torch.Tensor:
    """Encode ``text`` into a (1, tokens) tensor; ``<|endoftext|>`` is allowed."""
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return torch.tensor(ids, dtype=torch.long).unsqueeze(0)


def token_ids_to_text(token_ids: torch.Tensor, tokenizer) -> str:
    """Decode a (1, tokens) or (tokens,) tensor back into text."""
    ids = token_ids.squeeze(0) if token_ids.dim() == 2 else token_ids
    return tokenizer.decode(ids.tolist())


def _check_prompt(idx: torch.Tensor) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"the prompt must be a (batch, tokens) tensor of token ids, got {shape}")
    if idx.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. <|endoftext|>, id 50256)")
    if idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"the prompt must hold integer token ids, got dtype {idx.dtype}")


def _check_lengths(max_new_tokens, context_size) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if context_size is not None and (
        isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1
    ):
        raise ValueError(f"context_size must be a positive integer, got {context_size!r}")


def _check_finite(logits: torch.Tensor) -> None:
    # NaN logits would make argmax pick token 0 and sampling fail obscurely: say what is wrong.
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(
            "the model's logits contain NaN or infinity, so no token can be chosen: its weights hold "
            "NaN/inf (did training diverge? try a lower learning rate or gradient clipping)"
        )


@torch.no_grad()
def generate_text_simple(model, idx: torch.Tensor, max_new_tokens: int, context_size: int) -> torch.Tensor:
    """Greedy decoding, the book's way: the whole (cropped) sequence goes through the model each step.

    A prompt longer than ``context_size`` is cropped to its last ``context_size`` tokens
    before each step (the model cannot see further back); the returned tensor still holds
    the whole prompt followed by the new tokens.
    """
    _check_prompt(idx)
    _check_lengths(max_new_tokens, context_size)
    for _ in range(max_new_tokens):
        logits = model(idx[:, -context_size:])[:, -1, :]
        _check_finite(logits)
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def _next_token(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """Pick the next token from (batch, vocab) logits: greedy at temperature 0, else sample."""
    if top_k is not None:
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
        logits = logits.masked_fill(logits < top_logits[:, -1:], -torch.inf)
    if temperature == 0.0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1)


@torch.no_grad()
def generate(
    model: GPTModel,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    context_size: int | None = None,
    fast: bool | fast_path.FastPath = False,
) -> torch.Tensor:
    """Append up to ``max_new_tokens`` tokens to the (batch, tokens) prompt ``idx``.

    * ``temperature == 0``: greedy (argmax); ``> 0``: sample from softmax(logits / temperature).
    * ``top_k``: only the ``top_k`` most likely tokens can be picked.
    * ``eos_id``: stop once every sequence in the batch has produced it. As in the book, the
      end token that stops generation is not appended; in a batch, a sequence that ended
      earlier than the others is padded with ``eos_id`` until they all have.
    * ``use_cache``: keep each layer's keys and values (``KVCache``) and feed only the newest
      token; gives the same tokens as ``use_cache=False``, much faster.

    The model sees at most ``context_size`` tokens (default: its context length): a longer
    prompt is cropped to its last ``context_size`` tokens, and once the sequence outgrows the
    window the window slides (the cache is then rebuilt, since every position shifts).
    The returned tensor holds the whole prompt and the new tokens.

    ``fast=True``: the fast path (``reference_impl.fast``). The output head is applied to the
    last position only; where the hardware multiplies bfloat16 natively, every product runs in
    bfloat16 (autocast casts each weight once per call, so decoding reads half the bytes);
    elsewhere, on a CPU, the layers read transposed copies of their weights, which the
    matrix-vector product streams faster. Greedy tokens can differ from the default's where
    two logits are (nearly) tied.
    """
    _check_prompt(idx)
    _check_lengths(max_new_tokens, context_size)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    window = context_size or model.cfg.context_length
    if use_cache and window > model.cfg.context_length:
        raise ValueError(f"context_size {window} exceeds the model's context length {model.cfg.context_length}")
    fast = fast_path.resolve(fast, idx.device)
    if fast is not None and hasattr(model, "features"):  # a GPTModel: the head for the last position only
        last_logits = lambda tokens, cache: model.out_head(model.features(tokens, cache)[:, -1, :])
    else:
        last_logits = lambda tokens, cache: model(tokens, cache)[:, -1, :]
    with contextlib.ExitStack() as settings:
        if fast is not None:
            settings.enter_context(fast.autocast())
            settings.enter_context(fast.decoding(model))
        return _generate_loop(model, last_logits, idx, max_new_tokens, temperature, top_k, eos_id, use_cache, window)


def _generate_loop(
    model, last_logits, idx, max_new_tokens, temperature, top_k, eos_id, use_cache, window
) -> torch.Tensor:
    cache = model.new_cache() if use_cache else None
    finished = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if cache is None:
            logits = last_logits(idx[:, -window:], None)
        elif cache.length == 0 or cache.length + 1 > window:
            cache.reset()  # first step, or the window slid: (re)read the visible tokens
            logits = last_logits(idx[:, -window:], cache)
        else:
            logits = last_logits(idx[:, -1:], cache)
        last = logits.float()  # bfloat16 under the fast path's autocast
        _check_finite(last)
        idx_next = _next_token(last, temperature, top_k)
        if eos_id is not None:
            # Sequences that already ended keep emitting eos_id (a padding they can strip).
            idx_next = torch.where(finished, torch.full_like(idx_next, eos_id), idx_next)
            finished |= idx_next == eos_id
            if bool(finished.all()):
                break  # as in the book, the final end token is not appended
        idx = torch.cat((idx, idx_next), dim=1)
    return idx
