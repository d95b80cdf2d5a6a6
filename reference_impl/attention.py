"""Self-attention, step by step as chapter 3 builds it, then the fused form the model uses.

The book's steps, each a small readable module:

* ``SelfAttention_v1``   -- weights as raw ``nn.Parameter`` matrices
* ``SelfAttention_v2``   -- the same with ``nn.Linear`` layers
* ``CausalAttention``    -- adds the causal mask and dropout on the attention weights
* ``MultiHeadAttentionWrapper`` -- several ``CausalAttention`` heads, concatenated
* ``MultiHeadAttention`` -- all heads in one set of matrices, split by reshaping

``FusedMultiHeadAttention`` computes exactly what ``MultiHeadAttention`` computes, but
with one ``qkv`` projection (one matrix multiplication instead of three, and the same
layout as OpenAI's GPT-2 checkpoints) and PyTorch's ``scaled_dot_product_attention``
(a fused kernel that never materialises the full mask). It also supports a KV cache
for fast generation. It can load a ``MultiHeadAttention`` state dict directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention_v1(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = x @ self.W_query, x @ self.W_key, x @ self.W_value
        scores = queries @ keys.transpose(-2, -1)
        # Scale by sqrt(d_k) so the softmax does not saturate for large key sizes.
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


class SelfAttention_v2(nn.Module):
    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(-2, -1)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


def causal_mask(num_tokens: int, device=None) -> torch.Tensor:
    """Boolean (num_tokens, num_tokens) mask, True above the diagonal: the future to hide."""
    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=device), diagonal=1)


class CausalAttention(nn.Module):
    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # A buffer moves with the module to the GPU but is not a trainable parameter.
        self.register_buffer("mask", causal_mask(context_length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, num_tokens, _ = x.shape
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(1, 2)
        scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)
        return weights @ values


class MultiHeadAttentionWrapper(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)


def _check_heads(d_out: int, num_heads: int) -> None:
    if num_heads <= 0 or d_out % num_heads != 0:
        raise ValueError(
            f"d_out ({d_out}) must be divisible by num_heads ({num_heads}): "
            "each head gets d_out // num_heads dimensions"
        )


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(b, tokens, d_out) -> (b, heads, tokens, head_dim)."""
    b, num_tokens, d_out = x.shape
    return x.view(b, num_tokens, num_heads, d_out // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(b, heads, tokens, head_dim) -> (b, tokens, d_out); the inverse of ``split_heads``."""
    b, num_heads, num_tokens, head_dim = x.shape
    return x.transpose(1, 2).contiguous().view(b, num_tokens, num_heads * head_dim)


class MultiHeadAttention(nn.Module):
    """Chapter 3's multi-head attention: one set of Q, K, V matrices split into heads."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        _check_heads(d_out, num_heads)
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", causal_mask(context_length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, num_tokens, _ = x.shape
        queries = split_heads(self.W_query(x), self.num_heads)
        keys = split_heads(self.W_key(x), self.num_heads)
        values = split_heads(self.W_value(x), self.num_heads)
        scores = queries @ keys.transpose(2, 3)
        scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
        weights = torch.softmax(scores / self.head_dim**0.5, dim=-1)
        weights = self.dropout(weights)
        return self.out_proj(merge_heads(weights @ values))


class KVCache:
    """Keys and values of the tokens seen so far, one slot per layer, preallocated.

    Preallocating ``max_tokens`` positions avoids re-allocating (``torch.cat``) at
    every generated token.
    """

    def __init__(self, n_layers: int, max_tokens: int):
        self.n_layers = n_layers
        self.max_tokens = max_tokens
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.length = 0  # tokens stored (the same in every layer once a forward pass ends)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (b, heads, t, head_dim) keys/values of ``layer``; return all so far."""
        start, new = self.length, k.shape[2]
        if start + new > self.max_tokens:
            raise ValueError(f"KV cache is full: {start} + {new} tokens > max_tokens={self.max_tokens}")
        if self.keys[layer] is None:
            b, h, _, d = k.shape
            self.keys[layer] = k.new_empty(b, h, self.max_tokens, d)
            self.values[layer] = v.new_empty(b, h, self.max_tokens, d)
        self.keys[layer][:, :, start : start + new] = k
        self.values[layer][:, :, start : start + new] = v
        end = start + new
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, new_tokens: int) -> None:
        self.length += new_tokens

    def reset(self) -> None:
        self.keys = [None] * self.n_layers
        self.values = [None] * self.n_layers
        self.length = 0


class FusedMultiHeadAttention(nn.Module):
    """``MultiHeadAttention`` with one fused QKV projection and ``scaled_dot_product_attention``.

    Same maths, same parameters (``qkv.weight`` is ``W_query``, ``W_key`` and ``W_value``
    stacked), so a ``MultiHeadAttention`` state dict loads into it unchanged.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        _check_heads(d_out, num_heads)
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.register_load_state_dict_pre_hook(_load_book_layout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, num_tokens, _ = x.shape
        qkv = self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim)
        queries, keys, values = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, heads, tokens, head_dim)
        past = 0
        if cache is not None:
            past = cache.length
            keys, values = cache.update(layer, keys, values)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            context = F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p, is_causal=True)
        elif num_tokens == 1:
            # One new token may look at every cached token: no mask needed.
            context = F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p)
        else:
            # Several new tokens after a cached prefix: new token i sees positions <= past + i.
            allowed = ~causal_mask(past + num_tokens, device=x.device)[past:]
            context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed, dropout_p=dropout_p)
        return self.out_proj(merge_heads(context))


def fuse_separate_qkv(state_dict, prefix: str = "") -> dict:
    """A copy of ``state_dict`` with the book's attention layout turned into the fused one.

    The book's ``MultiHeadAttention`` keeps three projections, ``{prefix}W_query``,
    ``{prefix}W_key`` and ``{prefix}W_value``; ``FusedMultiHeadAttention`` keeps them stacked
    (query rows, then key rows, then value rows) in ``{prefix}qkv``. With ``prefix=""`` every
    attention layer of a whole model's state dict is converted. The book's ``mask`` buffer
    is dropped: the fused layer builds its mask when it needs one.
    """
    state_dict = dict(state_dict)
    suffix = "W_query.weight"
    prefixes = {name[: -len(suffix)] for name in state_dict if name.startswith(prefix) and name.endswith(suffix)}
    for layer in prefixes:
        for kind in ("weight", "bias"):
            names = [f"{layer}W_{part}.{kind}" for part in ("query", "key", "value")]
            if all(name in state_dict for name in names):
                state_dict[f"{layer}qkv.{kind}"] = torch.cat([state_dict.pop(name) for name in names], dim=0)
        state_dict.pop(f"{layer}mask", None)
    return state_dict


def _load_book_layout(module, state_dict, prefix, *args) -> None:
    # A load_state_dict pre-hook: the book's layout loads into the fused layer unchanged.
    # The hook must change the state dict in place.
    converted = fuse_separate_qkv(state_dict, prefix)
    for name in [name for name in state_dict if name.startswith(prefix) and name not in converted]:
        del state_dict[name]
    state_dict.update({name: value for name, value in converted.items() if name.startswith(prefix)})
