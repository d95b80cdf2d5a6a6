"""The fast path: the same training and decoding, with the work a CPU or GPU does best.

Every training loop of the package (``train.train_model_simple``, ``classify.train_classifier_simple``,
and so chapter 7's fine-tuning) and ``generate.generate`` take ``fast=True``. It switches on, where
they pay (``book/benchmarks.md`` measures each one):

* **bfloat16 matrix products** (``torch.autocast``) where the hardware multiplies bfloat16
  natively: a CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX. The weights, their
  gradients and the optimizer's state stay float32 ("fp32 master weights"); only the matrix
  products' inputs are rounded to bfloat16 (7 mantissa bits, ~3 digits), their sums stay float32. On a
  CPU without those instructions (AVX2 only, for example) bfloat16 products are emulated and
  run ~100x slower than float32, so there the fast path keeps float32.
* **The output head and the cross-entropy in one step** (``linear_cross_entropy``): the
  (tokens x 50257) logits become their own gradient in place, instead of PyTorch's logits,
  log-probabilities, and two more gradient tensors of that size. Same maths, less memory
  traffic. ``GPTModel(in_idx, targets=...)`` uses it.
* **Fused AdamW**: one kernel updates every parameter (``torch.optim.AdamW(..., fused=True)``);
  the loop switches a plain Adam/AdamW to it for the run and back afterwards.
* **Decoding from transposed weights** (``generate``, CPU, float32): generating a token is a
  matrix-vector product per weight matrix, limited by how fast the weights stream from memory,
  and MKL streams an (in, out) matrix up to twice as fast as ``nn.Linear``'s (out, in) one. For
  the length of a ``generate`` call every ``nn.Linear`` reads a transposed copy of its weight
  (the copies cost as much memory as those weights, until the call returns), and the output
  head is applied to the last position only.
* **Freed memory kept for reuse** (``keep_freed_memory``, Linux/glibc, CPU): glibc returns
  every block above 32 MB to the operating system when it is freed, so each step's
  vocabulary-sized tensors arrive as fresh pages that the kernel must zero. During training
  the process keeps them instead (and so holds on to its peak memory until the loop ends).

``fast=False`` (the default) runs exactly the book's float32 code, bit for bit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import sys

import torch
from torch import nn

IGNORE_INDEX = -100  # cross_entropy's default: targets with this value do not count


# ---------------------------------------------------------------------------------------
# What the fast path does on a device
# ---------------------------------------------------------------------------------------


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` multiplies bfloat16 matrices natively (so autocast pays)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        # torch.cpu's own probes (private, hence the guard): AVX512-BF16 (Zen 4, Cooper Lake and
        # later) or AMX (Sapphire Rapids and later) have bfloat16 dot-product instructions.
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


@dataclasses.dataclass(frozen=True)
class FastPath:
    """What ``fast=True`` switches on for one device type; ``FastPath.for_device(device)`` decides.

    Build one by hand to force a choice, e.g. ``FastPath("cpu", bf16=True)`` to see what
    bfloat16 does to the loss on a CPU that would not use it (slowly).
    """

    device_type: str = "cpu"
    bf16: bool = False  # matrix products in bfloat16 under torch.autocast
    fused_loss: bool = True  # output head + cross-entropy in one step (GPTModel(..., targets=...))
    fused_optimizer: bool = True  # Adam/AdamW switched to fused=True for the loop
    keep_freed_memory: bool = True  # CPU, Linux/glibc: see keep_freed_memory()
    transposed_decoding: bool = True  # CPU, float32: generate() reads (in, out) copies of the weights

    @classmethod
    def for_device(cls, device) -> FastPath:
        device_type = torch.device(device).type
        return cls(device_type=device_type, bf16=native_bf16(device_type))

    def autocast(self):
        """``torch.autocast`` in bfloat16 where this fast path uses it; a no-op context otherwise."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    @contextlib.contextmanager
    def training(self, optimizer):
        """The loop-wide settings: fused AdamW, freed memory kept (both undone on exit)."""
        with contextlib.ExitStack() as stack:
            if self.fused_optimizer:
                stack.enter_context(fused_adamw(optimizer))
            if self.keep_freed_memory and self.device_type == "cpu":
                stack.enter_context(keep_freed_memory())
            yield

    @property
    def decodes_transposed(self) -> bool:
        """Whether ``generate`` reads transposed weights: where it pays (CPU, no bfloat16)."""
        return self.transposed_decoding and self.device_type == "cpu" and not self.bf16

    def decoding(self, model: nn.Module):
        """The generate-wide setting: transposed weights where they pay."""
        return transposed_linear_weights(model) if self.decodes_transposed else contextlib.nullcontext()

    def describe(self) -> str:
        matmuls = "bfloat16 (autocast)" if self.bf16 else "float32"
        if not self.bf16 and self.device_type == "cpu" and not native_bf16("cpu"):
            matmuls += " (this CPU has no native bfloat16 instructions)"
        parts = [f"matrix products in {matmuls}"]
        parts += [name for flag, name in ((self.fused_loss, "fused head + cross-entropy"),
                                          (self.fused_optimizer, "fused AdamW"),
                                          (self.keep_freed_memory, "freed memory kept"),
                                          (self.decodes_transposed, "decoding from transposed weights")) if flag]  # fmt: skip
        return f"fast path on {self.device_type}: " + ", ".join(parts)


def resolve(fast, device) -> FastPath | None:
    """``fast`` as given to a loop or ``generate``: False/None -> None, True -> for ``device``, a FastPath -> itself."""
    if fast is None or fast is False:
        return None
    if fast is True:
        return FastPath.for_device(device)
    if isinstance(fast, FastPath):
        return fast
    raise TypeError(f"fast must be True, False or a reference_impl.fast.FastPath, got {fast!r}")


# ---------------------------------------------------------------------------------------
# Output head + cross-entropy, without keeping the logits
# ---------------------------------------------------------------------------------------


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets)`` (mean over the counted targets), computed leaner.

    ``hidden`` is (tokens, emb_dim), ``weight`` the output head's (vocab, emb_dim), ``targets``
    (tokens,). When gradients are needed, the forward pass already computes them: the logits'
    gradient is softmax(logits) - one_hot(target) (divided by the number of counted targets),
    which the logits tensor becomes in place, row block by row block while the block is in the
    cache; then two matrix products give the gradients of ``hidden`` and ``weight``. Only those
    two are kept for the backward pass. Under ``torch.autocast`` the three products run in the
    autocast dtype and everything else in float32.
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1] or weight.dim() != 2:
        raise ValueError(
            f"linear_cross_entropy expects hidden (tokens, emb_dim), weight (vocab, emb_dim) and targets "
            f"(tokens,), got {tuple(hidden.shape)}, {tuple(weight.shape)} and {tuple(targets.shape)}"
        )
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden has {hidden.shape[1]} features but the head expects {weight.shape[1]}")
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, dtype)
    with torch.autocast(device_type, enabled=False):
        loss, _ = _loss_and_logit_grad(_cast(hidden, dtype), _cast(weight, dtype), targets, ignore_index, False)
    return loss


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``tensor`` in the products' dtype (the autocast dtype; None: as it is, float32)."""
    return tensor if dtype is None else tensor.to(dtype)


_ROWS_PER_BLOCK = 16  # 16 rows of 50257 float32 logits = 3.2 MB: stays in the cache while it is reworked


def _loss_and_logit_grad(hidden, weight, targets, ignore_index, want_grad: bool):
    logits = (hidden @ weight.t()).float()  # (tokens, vocab), float32 whatever the products' dtype
    counted = targets != ignore_index
    count = counted.sum()  # 0 when every target is ignored: a NaN loss and zero gradients, as cross_entropy gives
    safe_targets = torch.where(counted, targets, 0)
    if bool((safe_targets < 0).any() or (safe_targets >= weight.shape[0]).any()):
        bad = targets[counted & ((targets < 0) | (targets >= weight.shape[0]))][0].item()
        raise ValueError(
            f"target id {bad} is outside the vocabulary of {weight.shape[0]} (ignore_index={ignore_index})"
        )
    target_logits = logits.gather(1, safe_targets[:, None]).squeeze(1)
    log_sum_exp = torch.empty_like(target_logits)
    # The mean counts each counted row once; ignored rows get no gradient.
    row_weight = (counted / count.clamp(min=1)).to(logits.dtype).unsqueeze(1)
    for start in range(0, logits.shape[0], _ROWS_PER_BLOCK):
        block = logits[start : start + _ROWS_PER_BLOCK]
        row_max = block.amax(dim=1, keepdim=True)
        if want_grad:
            torch.exp(block - row_max, out=block)  # in place: the block becomes exp(logit - max)
            total = block.sum(dim=1, keepdim=True)
            block.mul_(row_weight[start : start + _ROWS_PER_BLOCK] / total)  # ... then softmax / count
        else:
            total = (block - row_max).exp_().sum(dim=1, keepdim=True)
        log_sum_exp[start : start + _ROWS_PER_BLOCK] = (total.log() + row_max).squeeze(1)
    loss = ((log_sum_exp - target_logits) * counted).sum() / count
    if not want_grad:
        return loss, None
    rows = torch.arange(logits.shape[0], device=logits.device)
    logits[rows, safe_targets] -= row_weight.squeeze(1)  # (softmax - one_hot) / count
    return loss, logits


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, dtype):
        hidden_low, weight_low = _cast(hidden, dtype), _cast(weight, dtype)  # each cast once
        loss, logit_grad = _loss_and_logit_grad(hidden_low, weight_low, targets, ignore_index, want_grad=True)
        logit_grad = _cast(logit_grad, dtype)
        # The gradients in the parameters' own dtype (float32 master weights under autocast).
        grad_hidden = (logit_grad @ weight_low).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = (logit_grad.t() @ hidden_low).to(weight.dtype) if ctx.needs_input_grad[1] else None
        ctx.grads = (grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.grads
        del ctx.grads
        scale = lambda grad: None if grad is None else grad * grad_loss
        return scale(grad_hidden), scale(grad_weight), None, None, None


# ---------------------------------------------------------------------------------------
# Decoding from transposed weights
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def transposed_linear_weights(model: nn.Module):
    """Inside the block, every float32 CPU ``nn.Linear`` of ``model`` multiplies by an (in, out) copy.

    Same values (the products may round differently in the last bit); for inference only: the
    copies are detached, and gradients would not reach the weights. On exit the layers are
    as before and the copies are freed.
    """
    patched = []
    try:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if type(module) is nn.Linear and weight.device.type == "cpu" and weight.dtype == torch.float32:
                module.forward = _transposed_forward(weight.detach().t().contiguous(), module.bias)
                patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward  # the instance attribute: nn.Linear.forward again


def _transposed_forward(weight_t: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = flat @ weight_t if bias is None else torch.addmm(bias, flat, weight_t)
        return out.reshape(*x.shape[:-1], weight_t.shape[1])

    return forward


# ---------------------------------------------------------------------------------------
# Loop-wide settings
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def fused_adamw(optimizer):
    """Run ``optimizer`` with ``fused=True`` inside the block if it is a plain Adam/AdamW that can be.

    Same update rule; the fused kernel rounds differently in the last bits. Anything else
    (another optimizer, ``foreach=True`` or ``differentiable=True`` chosen explicitly,
    parameters that are not floating point) is left as it is.
    """
    groups = optimizer.param_groups
    switch = (
        type(optimizer) in (torch.optim.Adam, torch.optim.AdamW)
        and all(not g.get("fused") and not g.get("foreach") and not g.get("differentiable") for g in groups)
        and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
        # Fused AdamW keeps its step counters on the parameters' device: fine for a fresh optimizer or on CPU.
        and (not optimizer.state or all(p.device.type == "cpu" for g in groups for p in g["params"]))
    )
    if not switch:
        yield False
        return
    before = [(g.get("fused"), g.get("foreach")) for g in groups]
    for group in groups:
        group["fused"], group["foreach"] = True, False
    try:
        yield True
    finally:
        for group, (fused, foreach) in zip(groups, before):
            group["fused"], group["foreach"] = fused, foreach


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt's parameters (malloc.h)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # musl and others: no mallopt
        return None


def set_keep_freed_memory(keep: bool) -> bool:
    """Switch glibc's keeping of freed memory on or off (back to its defaults); False where there is no glibc.

    ``keep_freed_memory()`` is the same as a block; a process that should keep it for its
    whole life (a benchmark's worker) calls this once.
    """
    libc = _glibc()
    if libc is None:
        return False
    if keep:
        libc.mallopt(_M_MMAP_MAX, 0)  # no mmap'ed blocks: large tensors come from the reusable heap
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # and the heap's free top is not given back
    else:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def keep_freed_memory():
    """Inside the block, glibc keeps freed memory for reuse instead of returning it to the OS.

    The process's memory then stays at its peak until the block ends; on exit glibc's defaults
    come back and the free memory is returned (``malloc_trim``). Elsewhere (macOS, Windows,
    musl) a no-op that yields False. Equivalent to starting Python with
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``.
    """
    kept = set_keep_freed_memory(True)
    try:
        yield kept
    finally:
        if kept:
            set_keep_freed_memory(False)
