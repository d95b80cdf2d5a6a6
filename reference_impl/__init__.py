"""reference_impl: the finished code that the course's chapters build step by step.

Modules by concept:

* ``download``  -- the one way to get data files: SHA-256 checked, cached, offline-aware
* ``tokenizer`` -- simple regex tokenizers and a from-scratch byte-level BPE (GPT-2's)
* ``data``      -- sliding-window input-target pairs and their ``DataLoader``
* ``attention`` -- self-attention, step by step, and the fused form the model uses
* ``model``     -- ``GPTConfig`` and ``GPTModel``
* ``generate``  -- greedy and sampled decoding, with a KV cache
* ``train``     -- the pretraining loop (chapter 5 + appendix D), loss plots, checkpoints
* ``fast``      -- the fast path (``fast=True``): bfloat16 where native, fused head + loss, fused AdamW
* ``distributed`` -- the same loop on several processes with DDP (``torchrun -m reference_impl.distributed``)
* ``weights``   -- OpenAI's GPT-2 checkpoints (Hugging Face safetensors layout) into ``GPTModel``
* ``classify``  -- chapter 6: spam classification fine-tuning
* ``instruct``  -- chapter 7: Alpaca prompts, padded batches, responses, an offline ROUGE-L score
* ``judge``     -- a larger LLM (Ollama) as the judge of the responses
* ``lora``      -- appendix E: low-rank adaptation

The course's tooling (exercise checks, batch grading, notebook authoring) is not part of it:
it lives beside it, in ``course_tools``.
"""

from .model import GPTConfig, GPTModel

__all__ = ["GPTConfig", "GPTModel"]
