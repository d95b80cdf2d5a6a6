"""reference_impl: the finished code that the course's chapters build step by step.

Modules by concept:

* ``download``  -- the one way to get data files: SHA-256 checked, cached, offline-aware
* ``tokenizer`` -- simple regex tokenizers and a from-scratch byte-level BPE (GPT-2's)
* ``data``      -- sliding-window input-target pairs and their ``DataLoader``
* ``attention`` -- self-attention, step by step, and the fused form the model uses
* ``model``     -- ``GPTConfig`` and ``GPTModel``
* ``generate``  -- greedy and sampled decoding, with a KV cache
* ``train``     -- the pretraining loop (chapter 5 + appendix D), loss plots, checkpoints
* ``distributed`` -- the same loop on several processes with DDP (``torchrun -m reference_impl.distributed``)
"""

from .model import GPTConfig, GPTModel

__all__ = ["GPTConfig", "GPTModel"]
