"""Pretraining: the loss, the training loop, its plots and checkpoints (chapter 5 + appendix D).

The pieces, in the book's order:

* ``calc_loss_batch`` / ``calc_loss_loader`` -- cross-entropy of the next-token predictions,
  for one batch and averaged over a data loader; ``perplexity`` turns a loss into the
  "number of equally likely next tokens" the model hesitates between.
* ``evaluate_model`` and ``generate_and_print_sample`` -- what the loop reports as it goes.
* ``train_model_simple`` -- chapter 5's loop. Appendix D's extras (learning-rate warm-up,
  cosine decay, gradient clipping) are options of the same loop; with them off it is
  exactly the book's loop. It also runs unchanged under ``DistributedDataParallel``
  (see ``reference_impl.distributed``).
* ``learning_rate_at`` -- appendix D's schedule as a pure function of the step.
* ``plot_losses`` / ``plot_learning_rates`` -- the book's figures.
* ``save_checkpoint`` / ``load_checkpoint`` -- model (and optimizer) state, saved atomically
  and loaded with ``torch.load(weights_only=True)``, which never runs arbitrary pickled code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from . import fast as fast_path
from .attention import fuse_separate_qkv
from .download import atomic_write
from .generate import generate, generate_text_simple, text_to_token_ids, token_ids_to_text
from .model import GPTModel

# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model, device) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token logits against ``target_batch``.

    The (batch, tokens, vocab) logits and (batch, tokens) targets are flattened so that every
    token position is one classification. Targets equal to -100 (cross_entropy's
    ``ignore_index``) do not count: chapter 7 uses them to mask padding.
    """
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def fast_loss_function(fast: fast_path.FastPath | None):
    """The batch loss a loop uses: ``calc_loss_batch`` (fast=None) or the fast path's.

    The fast path's is the same mean cross-entropy, under the fast path's autocast and, for a
    ``GPTModel``, through ``GPTModel(in_idx, targets=...)`` (head and loss in one step).
    """
    if fast is None:
        return calc_loss_batch

    def fast_loss_batch(input_batch, target_batch, model, device):
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        with fast.autocast():
            if fast.fused_loss and isinstance(unwrap_model(model), GPTModel):
                return model(input_batch, targets=target_batch)
            logits = model(input_batch)
        return F.cross_entropy(logits.flatten(0, 1).float(), target_batch.flatten())

    return fast_loss_batch


def calc_loss_loader(data_loader, model, device, num_batches: int | None = None, loss_fn=None) -> float:
    """Average of ``loss_fn`` (default ``calc_loss_batch``) over the first ``num_batches`` batches.

    All batches when ``num_batches`` is None. Like the book, an empty loader gives ``nan``
    rather than an error, and every batch counts the same whatever its size. Chapter 6 passes
    its own ``loss_fn`` (the last token's class logits).
    """
    loss_fn = calc_loss_batch if loss_fn is None else loss_fn
    if len(data_loader) == 0:
        return float("nan")
    if num_batches is None:
        num_batches = len(data_loader)
    elif num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer or None, got {num_batches}")
    else:
        num_batches = min(num_batches, len(data_loader))
    total_loss = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total_loss += loss_fn(input_batch, target_batch, model, device).item()
    return total_loss / num_batches


def perplexity(loss) -> float:
    """exp(loss): a loss of ln(50257) means the model is as unsure as a uniform guess over GPT-2's vocabulary."""
    return math.exp(float(loss))


def evaluate_model(model, train_loader, val_loader, device, eval_iter: int, loss_fn=None) -> tuple[float, float]:
    """Training and validation loss over ``eval_iter`` batches each, with dropout off and no gradients."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter, loss_fn=loss_fn)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter, loss_fn=loss_fn)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(
    model, tokenizer, device, start_context: str, max_new_tokens: int = 50, fast=False
) -> None:
    """Print, on one line, the greedy continuation of ``start_context``: a glimpse of what the model learnt.

    With ``fast`` it decodes with the KV cache and the fast path's precision (``generate``).
    """
    model = unwrap_model(model)
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    if fast:
        token_ids = generate(model, encoded, max_new_tokens=max_new_tokens, context_size=context_size, fast=fast)
    else:
        token_ids = generate_text_simple(model, encoded, max_new_tokens=max_new_tokens, context_size=context_size)
    _print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train()


# ---------------------------------------------------------------------------------------
# Learning-rate schedule (appendix D)
# ---------------------------------------------------------------------------------------


def learning_rate_at(
    step: int,
    total_steps: int,
    *,
    peak_lr: float,
    warmup_steps: int = 0,
    initial_lr: float | None = None,
    min_lr: float | None = None,
    cosine_decay: bool = False,
) -> float:
    """The learning rate of (0-based) ``step`` out of ``total_steps``, as appendix D computes it.

    * Linear warm-up: step 0 uses ``initial_lr``, each step adds
      ``(peak_lr - initial_lr) / warmup_steps``, and step ``warmup_steps`` reaches ``peak_lr``.
      A small start keeps the first, large and noisy, updates from wrecking the random weights.
    * Then ``peak_lr`` stays, or with ``cosine_decay`` it follows half a cosine from
      ``peak_lr`` (at step ``warmup_steps``) down to ``min_lr`` (at step ``total_steps``).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    _check_schedule(total_steps, peak_lr, warmup_steps, initial_lr, min_lr, cosine_decay)
    if step < warmup_steps:
        return initial_lr + step * (peak_lr - initial_lr) / warmup_steps
    if not cosine_decay:
        return peak_lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))  # past the end: stay at min_lr
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def _check_schedule(total_steps, peak_lr, warmup_steps, initial_lr, min_lr, cosine_decay) -> None:
    if peak_lr is None or peak_lr <= 0:
        raise ValueError(f"peak_lr must be a positive number, got {peak_lr}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps > 0 and initial_lr is None:
        raise ValueError(f"warmup_steps={warmup_steps} needs initial_lr, the rate to start from (appendix D uses 1e-5)")
    if warmup_steps == 0 and initial_lr is not None:
        raise ValueError("initial_lr is only used by a warm-up: set warmup_steps > 0 as well")
    if cosine_decay and min_lr is None:
        raise ValueError("cosine_decay=True needs min_lr, the rate to decay to (appendix D uses 1e-5)")
    if not cosine_decay and min_lr is not None:
        raise ValueError("min_lr is only used by the cosine decay: set cosine_decay=True as well")
    if cosine_decay and total_steps <= warmup_steps:
        raise ValueError(
            f"cosine_decay needs steps after the warm-up: total_steps={total_steps}, warmup_steps={warmup_steps}"
        )


# ---------------------------------------------------------------------------------------
# The training loop (chapter 5, with appendix D's options)
# ---------------------------------------------------------------------------------------


def require_batches(train_loader, num_epochs: int) -> None:
    """Refuse to train on a loader that yields no batch (training would silently do nothing)."""
    if num_epochs > 0 and len(train_loader) == 0:
        raise ValueError(
            "the training loader yields no batch, so there is nothing to train on: it has fewer examples "
            "than its batch_size and drops the last, incomplete batch (drop_last=True). Use more data, "
            "a smaller batch_size, or drop_last=False."
        )


class TrainingHistory(NamedTuple):
    """What ``train_model_simple`` returns.

    The book's loop returns three lists; this has a fourth, so unpack it as
    ``train_losses, val_losses, tokens_seen, _ = train_model_simple(...)``
    (or use the names: ``history.train_losses``).
    """

    train_losses: list[float]  # one per evaluation
    val_losses: list[float]  # one per evaluation
    tokens_seen: list[int]  # training tokens seen (over all processes) at each evaluation
    learning_rates: list[float]  # one per optimizer step


def train_model_simple(
    model,
    train_loader,
    val_loader,
    optimizer,
    device,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str | None,
    tokenizer,
    *,
    warmup_steps: int = 0,
    initial_lr: float | None = None,
    peak_lr: float | None = None,
    min_lr: float | None = None,
    cosine_decay: bool = False,
    grad_clip: float | None = None,
    show_progress: bool = True,
    print_samples: bool = True,
    fast: bool | fast_path.FastPath = False,
) -> TrainingHistory:
    """Train ``model`` for ``num_epochs`` passes over ``train_loader``; return a ``TrainingHistory``.

    Every ``eval_freq`` optimizer steps (from the first one) it evaluates ``eval_iter`` batches
    of each loader and prints the two losses; after each epoch it prints a sample continuing
    ``start_context`` (skipped when ``start_context`` or ``tokenizer`` is None, or
    ``print_samples`` is False).

    Appendix D's extras, all off by default (the loop is then exactly chapter 5's):

    * ``warmup_steps``, ``initial_lr``: grow the learning rate linearly from ``initial_lr``
      to ``peak_lr`` over the first ``warmup_steps`` steps;
    * ``cosine_decay``, ``min_lr``: afterwards, lower it along a cosine to ``min_lr``;
    * ``peak_lr``: defaults to the optimizer's learning rate;
    * ``grad_clip``: after the warm-up, rescale the gradients so that their global L2 norm
      is at most ``grad_clip`` (appendix D uses 1.0).

    Under ``torch.distributed`` (a ``DistributedDataParallel`` model, a ``DistributedSampler``
    loader), every process runs this loop, but only rank 0 evaluates, prints and shows the
    progress bar; the sampler is told each new epoch so that it reshuffles.

    ``fast=True`` trains, evaluates and samples through the fast path (``reference_impl.fast``:
    bfloat16 matrix products where the hardware has them, head and loss fused, fused AdamW,
    freed memory kept); the default runs the book's float32 code unchanged.
    """
    if eval_freq < 1:
        raise ValueError(f"eval_freq must be a positive number of steps, got {eval_freq}")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be a positive gradient norm or None, got {grad_clip}")
    require_batches(train_loader, num_epochs)
    fast = fast_path.resolve(fast, device)
    loss_batch = fast_loss_function(fast)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * num_epochs
    scheduled = warmup_steps > 0 or cosine_decay or peak_lr is not None
    if scheduled:
        peak_lr = optimizer.param_groups[0]["lr"] if peak_lr is None else peak_lr
        _check_schedule(total_steps, peak_lr, warmup_steps, initial_lr, min_lr, cosine_decay)
    schedule = dict(
        peak_lr=peak_lr, warmup_steps=warmup_steps, initial_lr=initial_lr, min_lr=min_lr, cosine_decay=cosine_decay
    )

    is_main = _rank() == 0
    world_size = _world_size()
    # Rank 0 evaluates and generates with the bare model: a DDP forward pass would wait for
    # the other processes, which are busy training.
    bare_model = unwrap_model(model)

    train_losses, val_losses, track_tokens_seen, track_lrs = [], [], [], []
    tokens_seen, global_step = 0, -1
    progress = tqdm(total=total_steps, disable=not (show_progress and is_main), dynamic_ncols=True)
    with fast.training(optimizer) if fast else contextlib.nullcontext():
        for epoch in range(num_epochs):
            model.train()
            sampler = getattr(train_loader, "sampler", None)
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every process
            progress.set_description(f"Ep {epoch + 1}/{num_epochs}")

            for input_batch, target_batch in train_loader:
                optimizer.zero_grad()
                global_step += 1
                if scheduled:
                    lr = learning_rate_at(global_step, total_steps, **schedule)
                    for param_group in optimizer.param_groups:
                        param_group["lr"] = lr
                track_lrs.append(optimizer.param_groups[0]["lr"])

                loss = loss_batch(input_batch, target_batch, model, device)
                loss.backward()  # under DDP this also averages the gradients over the processes
                # Appendix D clips only after the warm-up; it used `>`, which skipped one step (a known erratum).
                if grad_clip is not None and global_step >= warmup_steps:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
                optimizer.step()
                tokens_seen += input_batch.numel() * world_size
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}")

                if global_step % eval_freq == 0 and is_main:
                    train_loss, val_loss = evaluate_model(
                        bare_model, train_loader, val_loader, device, eval_iter, loss_fn=loss_batch
                    )
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    track_tokens_seen.append(tokens_seen)
                    _print(
                        f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )

            if print_samples and is_main and start_context is not None and tokenizer is not None:
                generate_and_print_sample(bare_model, tokenizer, device, start_context, fast=fast or False)

    progress.close()
    return TrainingHistory(train_losses, val_losses, track_tokens_seen, track_lrs)


def unwrap_model(model):
    """The model inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; ``model`` itself otherwise."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _print(line: str) -> None:
    # tqdm.write prints above an active progress bar instead of through it (plain print otherwise).
    tqdm.write(line)


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses):
    """The book's loss plot: both losses against epochs, with tokens seen on a second x axis.

    ``epochs_seen`` is usually ``torch.linspace(0, num_epochs, len(train_losses))``. Returns
    the matplotlib Figure (a pyplot figure: in a notebook it shows when the cell ends;
    ``fig.savefig("loss-plot.pdf")`` saves it as the book does).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    lengths = {len(epochs_seen), len(tokens_seen), len(train_losses), len(val_losses)}
    if len(lengths) != 1:
        raise ValueError(
            "plot_losses needs one value per evaluation in each list, got lengths "
            f"epochs_seen={len(epochs_seen)}, tokens_seen={len(tokens_seen)}, "
            f"train_losses={len(train_losses)}, val_losses={len(val_losses)}"
        )
    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, val_losses, linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
    ax2 = ax1.twiny()  # a second x axis sharing the y axis
    ax2.plot(tokens_seen, train_losses, alpha=0)  # invisible: only there to scale the axis
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()
    return fig


def plot_learning_rates(learning_rates):
    """Learning rate against optimizer step (``TrainingHistory.learning_rates``); returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(len(learning_rates)), learning_rates)
    ax.set_xlabel("Steps")
    ax.set_ylabel("Learning rate")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def save_checkpoint(path, model, optimizer=None, **extra) -> Path:
    """Save the model's (and optimizer's) state dict, plus small ``extra`` values, to ``path``.

    The file holds the book's keys, ``model_state_dict`` and ``optimizer_state_dict``, and
    ``extra`` (e.g. ``epoch=3, cfg=model.cfg``; a dataclass such as ``GPTConfig`` is stored
    as a dict, since ``load_checkpoint`` accepts only tensors and plain values), and the
    SHA-256 of every tensor in it, which ``load_checkpoint`` checks: a damaged file is found
    instead of loading changed weights. The write is atomic: an interrupted save leaves any
    older file at ``path`` intact.
    """
    path = Path(path)
    checkpoint = {"model_state_dict": unwrap_model(model).state_dict()}
    if optimizer is not None:
        checkpoint["optimizer_state_dict"] = optimizer.state_dict()
    checkpoint["extra"] = {key: _plain_value(value, key) for key, value in extra.items()}
    checkpoint[CHECKSUM_KEY] = _tensors_sha256(checkpoint)

    try:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as RuntimeError
        folder = path.resolve().parent
        free = shutil.disk_usage(folder).free if folder.exists() else None
        hint = f"; {free / 2**20:.0f} MiB are free in {folder}: is the disk full?" if free is not None else ""
        raise OSError(
            f"could not write the checkpoint {path} ({type(err).__name__}: {_first_line(err)}){hint}"
        ) from err
    return path


CHECKSUM_KEY = "tensors_sha256"  # in checkpoints written by save_checkpoint
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format is a zip archive


def load_checkpoint(path, model, optimizer=None, map_location="cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``); return its extras.

    A plain ``torch.save(model.state_dict(), path)`` file (the book's ``model.pth``) loads
    too. The file is read with ``weights_only=True``: tensors and plain values only, so a
    file from the internet cannot run code. Nothing is changed unless the checkpoint fits:
    a missing, unexpected or differently shaped tensor raises a ValueError naming it, as does
    a file that is damaged (its tensors do not match the checksum saved with them), cut
    short, or not a checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    checkpoint = _read_checkpoint(path, map_location)

    if isinstance(checkpoint, Mapping) and "model_state_dict" in checkpoint:
        model_state = checkpoint["model_state_dict"]
        optimizer_state = checkpoint.get("optimizer_state_dict")
        extra = dict(checkpoint.get("extra", {}))
        if CHECKSUM_KEY in checkpoint and checkpoint[CHECKSUM_KEY] != _tensors_sha256(checkpoint):
            raise ValueError(
                f"{path} is damaged: its tensors do not match the checksum saved with them, so it was not "
                "loaded (a changed or corrupted file). Use another copy, or save it again."
            )
    elif isinstance(checkpoint, Mapping) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        model_state, optimizer_state, extra = checkpoint, None, {}  # a bare state dict
    else:
        raise ValueError(f"{path} is not a model checkpoint: it holds no 'model_state_dict'")

    model = unwrap_model(model)
    # The book's attention layout (W_query, W_key, W_value) is stacked into the fused ``qkv``,
    # as the model's own loading does, so that the fit check sees the names it will load.
    model_state = fuse_separate_qkv(model_state)
    _check_fits(model, model_state)
    _check_tying(model, model_state, path)
    if optimizer is not None:
        if optimizer_state is None:
            raise ValueError(f"{path} holds no optimizer state: it was saved without an optimizer")
        optimizer.load_state_dict(optimizer_state)
    model.load_state_dict(model_state)
    return extra


def _read_checkpoint(path: Path, map_location):
    """``torch.load(path, weights_only=True)``, with errors that name the file and the problem."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise ValueError(f"{path} is empty: not a checkpoint (an interrupted copy or download?)")
    if not head.startswith(_ZIP_MAGIC) and head.lstrip()[:1] in (b"<", b"{", b"["):
        raise ValueError(
            f"{path} is not a checkpoint: it is a text file (starting {head.lstrip()[:40]!r}), "
            "e.g. a web page saved in place of the file. Download the checkpoint again."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not head.startswith(_ZIP_MAGIC):
            raise ValueError(f"{path} is not a PyTorch checkpoint ({_first_line(err)})") from None
        raise pickle.UnpicklingError(
            f"{path} holds Python objects other than tensors and plain values, so it was not loaded: "
            "unpickling them could run any code. Checkpoints written by save_checkpoint (or a "
            "torch.save of a state dict) hold only tensors and plain values and load safely."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        size = path.stat().st_size
        raise ValueError(
            f"{path} cannot be read as a PyTorch checkpoint: it is damaged or cut short ({size:,} bytes; "
            f"{type(err).__name__}: {_first_line(err)}). Use another copy, or save it again."
        ) from None


def _tensors_sha256(checkpoint: Mapping) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of every tensor in the checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in _tensors(checkpoint, ""):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _tensors(value, name: str):
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            if key != CHECKSUM_KEY:
                yield from _tensors(value[key], f"{name}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{name}/{i}")


def _check_tying(model, state_dict: Mapping, path: Path) -> None:
    """Refuse a checkpoint with its own output head for a model whose head is the embedding.

    Loading both into the one shared tensor would let the head overwrite the embedding.
    """
    tied = getattr(getattr(model, "out_head", None), "weight", None) is getattr(
        getattr(model, "tok_emb", None), "weight", False
    )
    head, embedding = state_dict.get("out_head.weight"), state_dict.get("tok_emb.weight")
    if tied and head is not None and embedding is not None and not torch.equal(head, embedding):
        raise ValueError(
            f"{path} has an output head of its own (out_head.weight differs from tok_emb.weight), "
            "but this model ties its head to the token embedding (tie_embeddings=True): loading it "
            "would overwrite the embedding with the head. Build the model with tie_embeddings=False "
            "to load it as it is, or drop out_head.weight from the state dict to keep the embedding "
            "and tie the head to it."
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_fits(model, state_dict: Mapping) -> None:
    expected = model.state_dict()
    problem = None
    for name, tensor in expected.items():
        if name not in state_dict:
            problem = f"the model has {name} (shape {_shape(tensor)}) but the checkpoint does not"
        elif state_dict[name].shape != tensor.shape:
            problem = f"{name} has shape {_shape(state_dict[name])} in the checkpoint but {_shape(tensor)} in the model"
        if problem:
            break
    else:
        unexpected = [name for name in state_dict if name not in expected]
        if unexpected:
            name = unexpected[0]
            problem = f"the checkpoint has {name} (shape {_shape(state_dict[name])}) but the model does not"
    if problem:
        raise ValueError(f"checkpoint does not fit this model: {problem} — was it saved from another configuration?")


def _shape(tensor: torch.Tensor) -> str:
    return str(tuple(tensor.shape))


def _plain_value(value, name: str):
    """``value`` as something ``torch.load(weights_only=True)`` accepts, or a TypeError naming it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_value(v, f"{name}[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping):
        return {k: _plain_value(v, f"{name}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"checkpoint extra {name!r} is a {type(value).__name__}: only tensors, numbers, strings, "
        "None, and lists/tuples/dicts of them can be saved (they load without unpickling code)"
    )
