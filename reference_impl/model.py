"""The GPT model of chapter 4: configuration, building blocks, and the full model.

``GPTConfig`` is the one typed configuration; ``GPTConfig.from_preset`` gives the
four GPT-2 sizes. The model keeps the book's module and parameter names
(``tok_emb``, ``trf_blocks``, ``norm1``, ``ff``, ``scale``/``shift`` ...) so the
chapter's code and this package map one to one; inside the attention it uses the
fused form (see ``reference_impl.attention``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import FusedMultiHeadAttention, KVCache
from .fast import linear_cross_entropy


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    context_length: int = 1024  # the most tokens the model can look at
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False  # OpenAI's GPT-2 weights have query/key/value biases: True to load them
    tie_embeddings: bool = False  # share the output head with the token embedding (as GPT-2 does)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(
                f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads}): "
                "each attention head gets emb_dim // n_heads dimensions"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"GPTConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A GPT-2 size by name, e.g. ``"gpt2-small (124M)"`` (or ``"gpt2-small"``, ``"124M"``)."""
        key = preset_key(name)
        if key is None:
            raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[key], **overrides)

    @classmethod
    def coerce(cls, cfg: GPTConfig | Mapping) -> GPTConfig:
        """Accept a ``GPTConfig`` or the book's plain dict (``{"emb_dim": 768, ...}``)."""
        if isinstance(cfg, GPTConfig):
            return cfg
        if isinstance(cfg, Mapping):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = set(cfg) - known
            if unknown:
                raise ValueError(f"unknown configuration keys {sorted(unknown)}; known: {sorted(known)}")
            return cls(**cfg)
        raise TypeError(f"expected a GPTConfig or a dict, got {type(cfg).__name__}")

    def replace(self, **changes) -> GPTConfig:
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads


_GPT2 = GPTConfig(context_length=1024, drop_rate=0.1, qkv_bias=False)
PRESETS: dict[str, GPTConfig] = {
    "gpt2-small (124M)": _GPT2,
    "gpt2-medium (355M)": _GPT2.replace(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large (774M)": _GPT2.replace(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl (1558M)": _GPT2.replace(emb_dim=1600, n_layers=48, n_heads=25),
}


def preset_key(name: str) -> str | None:
    """The ``PRESETS`` key that ``name`` means (``"gpt2-small"``, ``"124M"`` ...), or None."""
    wanted = name.strip().lower()
    for key in PRESETS:
        short, size = key.lower().split(" ")
        if wanted in {key.lower(), short, size.strip("()")}:
            return key
    return None


class LayerNorm(nn.Module):
    """Normalise each token's features to mean 0, variance 1, then scale and shift.

    Computes ``scale * (x - mean) / sqrt(var + eps) + shift`` with the biased variance,
    through ``F.layer_norm`` (the same maths in one fused kernel).
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GPT-2's GELU, the tanh approximation:
    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))`` (one fused kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Expand each token to 4x the width, apply GELU, project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            GELU(),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: attention then feed-forward, each with a shortcut around it."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg = GPTConfig.coerce(cfg)
        self.att = FusedMultiHeadAttention(
            d_in=cfg.emb_dim,
            d_out=cfg.emb_dim,
            context_length=cfg.context_length,
            dropout=cfg.drop_rate,
            num_heads=cfg.n_heads,
            qkv_bias=cfg.qkv_bias,
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        # Without a cache, att is called as chapter 3's modules are (att(x)), so the book's
        # MultiHeadAttention can replace the fused one, e.g. to compare the two.
        attended = self.att(self.norm1(x)) if cache is None else self.att(self.norm1(x), cache, layer)
        # The shortcuts give gradients a direct path to early layers.
        x = x + self.drop_shortcut(attended)
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x


class GPTModel(nn.Module):
    def __init__(self, cfg: GPTConfig | Mapping):
        super().__init__()
        cfg = GPTConfig.coerce(cfg)
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.Sequential(*(TransformerBlock(cfg) for _ in range(cfg.n_layers)))
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight

    def forward(
        self, in_idx: torch.Tensor, cache: KVCache | None = None, *, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of shape (batch, tokens, vocab_size) for token ids of shape (batch, tokens).

        With a ``KVCache``, ``in_idx`` holds only the new tokens: they are placed after the
        ``cache.length`` tokens already seen, and their keys and values are added to it.

        With ``targets`` (the next token ids, same shape as ``in_idx``; -100 = not counted) it
        returns instead the mean cross-entropy, ``F.cross_entropy(logits.flatten(0, 1),
        targets.flatten())``, computed by ``fast.linear_cross_entropy`` without keeping the
        logits (the fast path's loss; nanoGPT's models take ``targets`` the same way).
        """
        if targets is not None and isinstance(in_idx, torch.Tensor) and targets.shape != in_idx.shape:
            raise ValueError(
                f"targets must have the shape of the token ids {tuple(in_idx.shape)}, got {tuple(targets.shape)}"
            )
        x = self.features(in_idx, cache)
        if targets is None:
            return self.out_head(x)
        if type(self.out_head) is nn.Linear and self.out_head.bias is None:
            return linear_cross_entropy(x.flatten(0, 1), self.out_head.weight, targets.flatten())
        # Another head (LoRA's, a classifier's...): the plain loss.
        return F.cross_entropy(self.out_head(x).flatten(0, 1).float(), targets.flatten())

    def features(self, in_idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final hidden states (batch, tokens, emb_dim), layer-normed: what the output head reads.

        ``forward`` is ``out_head(features(...))``; ``generate``'s fast path uses this to apply
        the head to the last position only.
        """
        self._check_input(in_idx, cache)
        past = cache.length if cache is not None else 0
        num_tokens = in_idx.shape[1]
        positions = torch.arange(past, past + num_tokens, device=in_idx.device)
        x = self.drop_emb(self._embed_tokens(in_idx) + self.pos_emb(positions))
        for layer, block in enumerate(self.trf_blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(num_tokens)
        return self.final_norm(x)

    def _embed_tokens(self, in_idx: torch.Tensor) -> torch.Tensor:
        try:
            return self.tok_emb(in_idx)
        except IndexError:  # checked only when it fails: no cost on the normal path
            bad = in_idx[(in_idx < 0) | (in_idx >= self.cfg.vocab_size)]
            raise ValueError(
                f"token id {bad[0].item()} is outside the vocabulary: ids must be between 0 and "
                f"{self.cfg.vocab_size - 1} (vocab_size={self.cfg.vocab_size}); "
                f"{bad.numel()} of the {in_idx.numel()} ids are out of range. Was the text encoded "
                "with another tokenizer, or padded with an id the model does not have?"
            ) from None

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layers, self.cfg.context_length)

    def _check_input(self, in_idx: torch.Tensor, cache: KVCache | None) -> None:
        if not isinstance(in_idx, torch.Tensor):
            raise TypeError(f"GPTModel expects a tensor of token ids, got {type(in_idx).__name__}")
        if in_idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"token ids must be integers (torch.long), got dtype {in_idx.dtype}; "
                "did you pass embeddings or forget .long()?"
            )
        if in_idx.dim() != 2:
            raise ValueError(
                f"token ids must have shape (batch, tokens), got {tuple(in_idx.shape)}; "
                "use .unsqueeze(0) to add a batch dimension"
            )
        if in_idx.shape[1] == 0:
            raise ValueError("token ids are empty: the model needs at least one token")
        past = cache.length if cache is not None else 0
        if past + in_idx.shape[1] > self.cfg.context_length:
            raise ValueError(
                f"{past + in_idx.shape[1]} tokens exceed the context length {self.cfg.context_length}; "
                "crop the input to its last context_length tokens (generate() does this for you)"
            )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model``, each shared tensor counted once (a tied head is not counted twice)."""
    seen = {}
    for p in model.parameters():
        if not trainable_only or p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def model_size_mb(model: nn.Module, bytes_per_value: int = 4) -> float:
    """Memory the parameters and buffers take, in megabytes (float32 unless told otherwise)."""
    values = count_parameters(model) + sum(b.numel() for b in model.buffers())
    return values * bytes_per_value / 1024**2
