"""LoRA, low-rank adaptation (appendix E): fine-tune a few small matrices, not the model.

A frozen ``nn.Linear`` computes ``x @ W.T``. LoRA adds ``alpha * (x @ A @ B)`` beside it,
with ``A`` of shape (in, rank) and ``B`` of shape (rank, out): for a small rank that is
``rank * (in + out)`` trainable numbers instead of ``in * out``. ``B`` starts at zero, so
the wrapped model computes exactly what it computed before training.

The book's recipe, in this order::

    for param in model.parameters():      # 1. freeze every weight of the model
        param.requires_grad = False
    replace_linear_with_lora(model, rank=16, alpha=16)  # 2. new A, B: trainable

``freeze_for_lora(model)`` does step 1 after step 2 as well: it freezes everything but
the LoRA matrices.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"the LoRA rank must be a positive integer, got {rank}")
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        # The same initialisation nn.Linear gives its weights: small random A ...
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        # ... and B = 0, so that A @ B = 0 and the layer starts as a no-op.
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """``linear(x) + lora(x)``: a (frozen) linear layer plus its low-rank update."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every ``nn.Linear`` inside ``model`` in a ``LinearWithLoRA``, in place.

    In ``GPTModel`` that is each block's fused ``qkv`` and ``out_proj``, both feed-forward
    layers, and ``out_head``. A tied ``out_head`` keeps sharing its weight with ``tok_emb``:
    the wrapper holds the same ``nn.Linear``. Returns ``model``.
    """
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)
    return model


def freeze_for_lora(model: nn.Module) -> nn.Module:
    """Make only the LoRA matrices trainable; every other parameter is frozen. Returns ``model``."""
    for param in model.parameters():
        param.requires_grad = False
    for module in model.modules():
        if isinstance(module, LoRALayer):
            module.A.requires_grad = True
            module.B.requires_grad = True
    return model
