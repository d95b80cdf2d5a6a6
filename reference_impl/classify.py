"""Fine-tuning GPT to classify text (chapter 6): is an SMS message spam?

The data: the SMS Spam Collection, 5,574 messages labelled "ham" or "spam". The recipe:

1. ``load_sms_spam`` -> ``create_balanced_dataset`` (as many ham as spam) ->
   ``random_split`` into train / validation / test -> ``write_csv`` (``Label,Text``, 0/1);
2. ``SpamDataset``: token ids padded with ``<|endoftext|>`` to one length;
3. ``prepare_for_classification``: a 2-class output head, only the last block trainable;
4. ``train_classifier_simple``: cross-entropy on the logits of each message's last *real*
   token, the one position that has seen the whole message through causal attention;
5. ``classify_review``: the label of a new message.

The last real token, not the last position: the book reads ``logits[:, -1, :]``, which for
a padded message is a padding token's output, so the same message got other logits (and at
times another label) with another amount of padding. ``last_token_index`` finds the last
token that is not padding; loss, accuracy, training and ``classify_review`` all read the
logits there, so a prediction never depends on the padding that follows the message
(``pad_token_id=None`` gives the book's last-position behaviour back).

Plain lists and the ``csv`` module, no pandas.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import random
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from . import fast as fast_path
from . import train
from .download import DataFileError, fetch

LABELS = {"ham": 0, "spam": 1}
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>: tokenizer.encode never produces it for plain text


# --- data -----------------------------------------------------------------------------


def load_sms_spam() -> list[tuple[str, str]]:
    """The SMS Spam Collection as ``(label, text)`` rows, label "ham" or "spam"."""
    path = fetch("SMSSpamCollection")
    with open(path, encoding="utf-8", newline="") as f:
        # QUOTE_NONE: a message may contain quotes, which are text, not CSV quoting.
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for line, row in enumerate(rows, start=1):
        if len(row) != 2 or row[0] not in LABELS:
            raise DataFileError(f"{path}, line {line}: expected 'ham' or 'spam', a tab, then the text; got {row!r}")
    return [(label, text) for label, text in rows]


def create_balanced_dataset(rows: Sequence[tuple], seed: int = 123) -> list[tuple]:
    """All spam rows and as many ham rows, picked at random (undersampling the majority).

    Ham first, then spam, as the book's ``pd.concat`` leaves them; ``random_split`` shuffles.
    """
    spam = [row for row in rows if label_id(row[0]) == 1]
    ham = [row for row in rows if label_id(row[0]) == 0]
    if len(ham) < len(spam):
        raise ValueError(f"fewer ham ({len(ham)}) than spam ({len(spam)}) rows: nothing to undersample")
    return random.Random(seed).sample(ham, len(spam)) + spam


def random_split(
    rows: Sequence, train_frac: float = 0.7, validation_frac: float = 0.1, seed: int = 123
) -> tuple[list, list, list]:
    """Shuffle, then cut into train, validation and test (the rest) parts."""
    if train_frac < 0 or validation_frac < 0 or train_frac + validation_frac > 1:
        raise ValueError(
            f"train_frac ({train_frac}) and validation_frac ({validation_frac}) must be >= 0 with a sum <= 1"
        )
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    train_end = int(len(shuffled) * train_frac)
    validation_end = train_end + int(len(shuffled) * validation_frac)
    return shuffled[:train_end], shuffled[train_end:validation_end], shuffled[validation_end:]


def write_csv(rows: Sequence[tuple], path: str | os.PathLike) -> Path:
    """Write ``(label, text)`` rows to ``path`` with the columns ``Label,Text`` (0 = ham, 1 = spam)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Label", "Text"])
        writer.writerows((label_id(label), text) for label, text in rows)
    return path


def read_csv(path: str | os.PathLike) -> list[tuple[int, str]]:
    """The ``(label, text)`` rows of a file ``write_csv`` wrote (labels as 0/1)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["Label", "Text"]:
            raise ValueError(f"{path}: expected the columns Label,Text, got {reader.fieldnames}")
        return [(label_id(row["Label"]), row["Text"]) for row in reader]


def label_id(label) -> int:
    """0 for "ham" / 0 / "0", 1 for "spam" / 1 / "1"."""
    if label in LABELS:
        return LABELS[label]
    if str(label) in ("0", "1"):
        return int(label)
    raise ValueError(f"unknown label {label!r}: expected 'ham', 'spam', 0 or 1")


class SpamDataset(Dataset):
    """Messages as equally long token-id tensors, each with its label (0 ham, 1 spam).

    Each message is encoded, cut to ``max_length`` tokens, and padded with ``pad_token_id``
    (``<|endoftext|>``) up to ``max_length``; without ``max_length``, up to the longest
    message. Give the validation and test sets the training set's ``.max_length``.
    ``.lengths`` holds each message's number of real (not padding) tokens.

    The classifier finds a message's end as its last token that is not ``pad_token_id``
    (``last_token_index``), so a message must not end with that id: the default, 50256,
    cannot (``tokenizer.encode`` refuses to turn text into ``<|endoftext|>``); another pad
    id that a message ends with is refused with a ``ValueError``.
    """

    def __init__(self, csv_file_or_rows, tokenizer, max_length: int | None = None, pad_token_id: int = PAD_TOKEN_ID):
        if isinstance(csv_file_or_rows, (str, os.PathLike)):
            rows = read_csv(csv_file_or_rows)
        else:
            rows = [(label_id(label), text) for label, text in csv_file_or_rows]
        if not rows:
            raise ValueError("SpamDataset got no rows")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive integer or None, got {max_length}")
        self.labels = [label for label, _ in rows]
        self.encoded_texts = [tokenizer.encode(text) for _, text in rows]
        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
            self.encoded_texts = [ids[:max_length] for ids in self.encoded_texts]
        for index, ids in enumerate(self.encoded_texts):
            if ids and ids[-1] == pad_token_id:
                raise ValueError(
                    f"message {index} ({rows[index][1][:40]!r}) ends with token {pad_token_id}, the pad_token_id: "
                    "its end could not be told from padding. Pad with an id the tokenizer does not produce "
                    f"for text, such as {PAD_TOKEN_ID} (<|endoftext|>)"
                )
        self.lengths = [len(ids) for ids in self.encoded_texts]
        self.encoded_texts = [ids + [pad_token_id] * (self.max_length - len(ids)) for ids in self.encoded_texts]

    def _longest_encoded_length(self) -> int:
        return max(len(ids) for ids in self.encoded_texts)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = torch.tensor(self.encoded_texts[index], dtype=torch.long)
        return encoded, torch.tensor(self.labels[index], dtype=torch.long)


# --- model ----------------------------------------------------------------------------


def prepare_for_classification(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Turn a pretrained ``GPTModel`` into a classifier, in place, as the book does.

    Freezes every weight, replaces ``out_head`` with a new trainable
    ``nn.Linear(emb_dim, num_classes)``, and unfreezes the last transformer block and the
    final LayerNorm. A tied head is untied by the replacement: ``tok_emb`` keeps its weights
    (frozen) and ``model.cfg`` says ``tie_embeddings=False``. Seed (``torch.manual_seed``)
    before calling it for a reproducible head. Returns ``model``.
    """
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    for param in model.parameters():
        param.requires_grad = False
    embedding = model.tok_emb.weight
    model.out_head = nn.Linear(embedding.shape[1], num_classes).to(embedding.device, embedding.dtype)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    if getattr(model, "cfg", None) is not None and getattr(model.cfg, "tie_embeddings", False):
        model.cfg = model.cfg.replace(tie_embeddings=False)
    return model


# --- loss, accuracy, training ---------------------------------------------------------


def last_token_index(input_batch: torch.Tensor, pad_token_id: int | None = PAD_TOKEN_ID) -> torch.Tensor:
    """The position of each row's last real token: the last one that is not ``pad_token_id``.

    ``input_batch``: (batch, tokens) token ids, each row a message followed by padding.
    Returns a (batch,) long tensor. A row of padding alone (an empty message) gives 0, its
    first position, which does not depend on the amount of padding either. With
    ``pad_token_id=None`` every row gives the last position, ``tokens - 1`` (the book's choice).
    """
    if input_batch.dim() != 2:
        raise ValueError(f"token ids must have shape (batch, tokens), got {tuple(input_batch.shape)}")
    batch_size, num_tokens = input_batch.shape
    if pad_token_id is None:
        return torch.full((batch_size,), num_tokens - 1, dtype=torch.long, device=input_batch.device)
    positions = torch.arange(num_tokens, device=input_batch.device)
    # padding positions count as -1, so the maximum is the last real position (or -1: none)
    real_positions = torch.where(input_batch != pad_token_id, positions, -1)
    return real_positions.max(dim=1).values.clamp(min=0)


def last_token_logits(
    logits: torch.Tensor, input_batch: torch.Tensor, pad_token_id: int | None = PAD_TOKEN_ID
) -> torch.Tensor:
    """The (batch, classes) logits at each message's last real token (``last_token_index``).

    Causal attention lets that position see the whole message and nothing after it, so its
    logits are the same however much padding follows.
    """
    index = last_token_index(input_batch, pad_token_id).to(logits.device)
    return logits[torch.arange(logits.shape[0], device=logits.device), index]


def calc_loss_batch(input_batch, target_batch, model, device, pad_token_id: int | None = PAD_TOKEN_ID) -> torch.Tensor:
    """Cross-entropy of each message's last real token's logits against the class labels.

    ``pad_token_id``: the padding that follows the messages (``None``: read the last
    position whatever it holds, as the book does).
    """
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = last_token_logits(model(input_batch), input_batch, pad_token_id)
    return F.cross_entropy(logits.float(), target_batch)


def _loss_fn(pad_token_id: int | None):
    return functools.partial(calc_loss_batch, pad_token_id=pad_token_id)


def calc_loss_loader(
    data_loader, model, device, num_batches: int | None = None, pad_token_id: int | None = PAD_TOKEN_ID
) -> float:
    """Mean classification loss over the first ``num_batches`` batches (all by default); NaN if empty."""
    return train.calc_loss_loader(data_loader, model, device, num_batches, loss_fn=_loss_fn(pad_token_id))


@torch.no_grad()
def calc_accuracy_loader(
    data_loader, model, device, num_batches: int | None = None, pad_token_id: int | None = PAD_TOKEN_ID
) -> float:
    """Share of correct predictions over the first ``num_batches`` batches (all by default).

    A prediction is the argmax of the logits at the message's last real token
    (``pad_token_id=None``: at the last position, as in the book). Puts the model in eval
    mode (no dropout), as the book does; NaN for an empty loader.
    """
    model.eval()
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer or None, got {num_batches}")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    correct_predictions, num_examples = 0, 0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        logits = last_token_logits(model(input_batch), input_batch, pad_token_id)
        predicted_labels = torch.argmax(logits, dim=-1)
        num_examples += predicted_labels.shape[0]
        correct_predictions += (predicted_labels == target_batch).sum().item()
    if num_examples == 0:
        return float("nan")
    return correct_predictions / num_examples


def evaluate_model(
    model, train_loader, val_loader, device, eval_iter: int, pad_token_id: int | None = PAD_TOKEN_ID
) -> tuple[float, float]:
    """Training and validation classification loss over ``eval_iter`` batches each (eval mode, no gradients)."""
    return train.evaluate_model(model, train_loader, val_loader, device, eval_iter, loss_fn=_loss_fn(pad_token_id))


def train_classifier_simple(
    model,
    train_loader,
    val_loader,
    optimizer,
    device,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    show_progress: bool = True,
    pad_token_id: int | None = PAD_TOKEN_ID,
    fast: bool | fast_path.FastPath = False,
):
    """Chapter 6's training loop; returns ``train_losses, val_losses, train_accs, val_accs, examples_seen``.

    Every ``eval_freq`` steps it records both losses over ``eval_iter`` batches; after each
    epoch, both accuracies over ``eval_iter`` batches. Loss and accuracy read each message's
    last real token; ``pad_token_id`` is the dataset's padding (``None``: the last position,
    as in the book). ``fast=True``: the fast path (``reference_impl.fast``) for the forward
    passes and the optimizer; the default is the book's float32 loop.
    """
    from tqdm.auto import tqdm

    fast = fast_path.resolve(fast, device)
    precision = fast.autocast if fast else contextlib.nullcontext

    if eval_freq < 1:
        raise ValueError(f"eval_freq must be a positive number of steps, got {eval_freq}")
    train.require_batches(train_loader, num_epochs)
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1
    loop_settings = fast.training(optimizer) if fast else contextlib.nullcontext()
    progress = tqdm(total=num_epochs * len(train_loader), desc="training", disable=not show_progress)
    with loop_settings, progress:
        for epoch in range(num_epochs):
            model.train()
            for input_batch, target_batch in train_loader:
                optimizer.zero_grad()
                with precision():
                    loss = calc_loss_batch(input_batch, target_batch, model, device, pad_token_id)
                loss.backward()
                optimizer.step()
                examples_seen += input_batch.shape[0]
                global_step += 1
                progress.update(1)
                if global_step % eval_freq == 0:
                    with precision():
                        train_loss, val_loss = evaluate_model(
                            model, train_loader, val_loader, device, eval_iter, pad_token_id
                        )
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    progress.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}")
                    tqdm.write(
                        f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )
            with precision():
                train_accuracy = calc_accuracy_loader(train_loader, model, device, eval_iter, pad_token_id)
                val_accuracy = calc_accuracy_loader(val_loader, model, device, eval_iter, pad_token_id)
            tqdm.write(
                f"Training accuracy: {train_accuracy * 100:.2f}% | Validation accuracy: {val_accuracy * 100:.2f}%"
            )
            train_accs.append(train_accuracy)
            val_accs.append(val_accuracy)
    return train_losses, val_losses, train_accs, val_accs, examples_seen


@torch.no_grad()
def classify_review(
    text: str, model, tokenizer, device, max_length: int | None = None, pad_token_id: int | None = PAD_TOKEN_ID
) -> str:
    """ "spam" or "not spam" for one message, prepared as ``SpamDataset`` prepares training data.

    The ids are cut to ``max_length`` and to the model's context length, then padded to
    ``max_length``. The label comes from the logits of the message's last real token, so
    it is the same for any ``max_length`` that does not cut the message (a shorter one
    classifies the message's beginning, as the dataset would). ``pad_token_id=None``
    reads the last position instead, padding or not (the book's behaviour).
    """
    model.eval()
    input_ids = tokenizer.encode(text)
    supported_context_length = model.pos_emb.weight.shape[0]
    length = min(max_length or len(input_ids), supported_context_length)
    num_real = min(len(input_ids), length)
    input_ids = input_ids[:length] + [PAD_TOKEN_ID if pad_token_id is None else pad_token_id] * (length - num_real)
    if not input_ids:
        raise ValueError("the text is empty: give max_length to classify it as padding alone")
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)
    logits = last_token_logits(model(input_tensor), input_tensor, pad_token_id)
    predicted_label = torch.argmax(logits[0], dim=-1).item()
    return "spam" if predicted_label == 1 else "not spam"


# --- plots ----------------------------------------------------------------------------


def plot_values(epochs_seen, examples_seen, train_values, val_values, label: str = "loss"):
    """Training and validation curves against epochs (bottom axis) and examples seen (top)."""
    from matplotlib.figure import Figure

    # A Figure, not pyplot: nothing global, and a notebook shows the returned figure once.
    fig = Figure(figsize=(5, 3))
    ax1 = fig.subplots()
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # a second x axis sharing the y axis
    ax2.plot(examples_seen, train_values, alpha=0)  # invisible: only sets the axis range
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    return fig
