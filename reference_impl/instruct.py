"""Instruction fine-tuning (chapter 7): prompts, padded batches, responses and an offline score.

The pipeline, in the book's order:

1. ``load_instruction_data`` and ``split_instruction_data``: 1,100 instruction-response
   pairs, split 85% / 10% / 5% into train / test / validation.
2. ``format_input``: the Alpaca prompt template; the answer follows after ``### Response:``.
3. ``InstructionDataset`` and ``custom_collate_fn``: pre-tokenised examples, padded per batch
   with ``<|endoftext|>``; padding targets become -100 so that the loss ignores them.
4. ``generate_responses``: the fine-tuned model answers each test instruction.
5. ``score_responses``: an automatic score that needs nothing but the reference answers
   (ROUGE-L F1, see below). ``reference_impl.judge`` scores with a larger LLM instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from .download import atomic_write, read_text
from .generate import generate, text_to_token_ids, token_ids_to_text

PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>: ends every answer and pads the batches
IGNORE_INDEX = -100  # the target value torch.nn.functional.cross_entropy skips by default

PROMPT_INTRO = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


# ---------------------------------------------------------------------------------------
# The data set and its split
# ---------------------------------------------------------------------------------------


def load_instruction_data() -> list[dict]:
    """The book's 1,100 examples, each a dict with ``instruction``, ``input`` and ``output``."""
    data = json.loads(read_text("instruction-data.json"))
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ValueError("instruction-data.json should hold a JSON list of objects")
    return data


class InstructionSplits(NamedTuple):
    train: list[dict]
    test: list[dict]
    val: list[dict]


def split_instruction_data(data: Sequence[dict], train_frac: float = 0.85, test_frac: float = 0.1) -> InstructionSplits:
    """Split in order, as the book does: the first 85% train, the next 10% test, the rest validation.

    On the book's data: 935 train, 110 test, 55 validation examples. Shuffle ``data`` first
    if its order means something; the book's file is already in random order.
    """
    if not (0 < train_frac <= 1 and 0 <= test_frac <= 1 and train_frac + test_frac <= 1):
        raise ValueError(
            f"need 0 < train_frac, 0 <= test_frac and train_frac + test_frac <= 1, "
            f"got train_frac={train_frac}, test_frac={test_frac}"
        )
    train_end = int(len(data) * train_frac)
    test_end = train_end + int(len(data) * test_frac)
    return InstructionSplits(list(data[:train_end]), list(data[train_end:test_end]), list(data[test_end:]))


# ---------------------------------------------------------------------------------------
# The prompt template (Alpaca style)
# ---------------------------------------------------------------------------------------


def format_input(entry: dict) -> str:
    """The prompt: the intro, ``### Instruction:``, and ``### Input:`` only when there is an input."""
    if "instruction" not in entry:
        raise KeyError(f"an instruction example needs an 'instruction' key; this one has {sorted(entry)}")
    _check_text(entry, "instruction")
    if entry.get("input") is not None:
        _check_text(entry, "input")
    instruction_text = f"{PROMPT_INTRO}\n\n### Instruction:\n{entry['instruction']}"
    input_text = f"\n\n### Input:\n{entry['input']}" if entry.get("input") else ""
    return instruction_text + input_text


def format_response(entry: dict) -> str:
    """What the model learns to write after the prompt: ``### Response:`` and the answer."""
    if "output" not in entry:
        raise KeyError(f"a training example needs an 'output' key; this one has {sorted(entry)}")
    _check_text(entry, "output")
    return f"\n\n### Response:\n{entry['output']}"


def _check_text(entry: dict, key: str) -> None:
    # A null or a number would be formatted as "None" or "42" and learnt as the answer.
    if not isinstance(entry[key], str):
        raise ValueError(
            f"the example's {key!r} is {entry[key]!r} ({type(entry[key]).__name__}), not a text: "
            f"fix or drop this example ({str(entry.get('instruction'))[:60]!r})"
        )


# ---------------------------------------------------------------------------------------
# Batches: pad with <|endoftext|>, ignore the padding in the loss
# ---------------------------------------------------------------------------------------


class InstructionDataset(Dataset):
    """Each example's prompt + response, tokenised once up front.

    An item is the list of token ids; with ``with_prompt_length=True`` it is the pair
    ``(prompt_length, token_ids)`` instead, which ``custom_collate_fn(mask_instruction=True)``
    needs to leave the prompt out of the loss (the book's exercise 7.2).
    """

    def __init__(self, data: Sequence[dict], tokenizer, with_prompt_length: bool = False):
        self.data = data
        self.with_prompt_length = with_prompt_length
        self.encoded_texts = []
        self.prompt_lengths = []
        for index, entry in enumerate(data):
            try:
                prompt, response = format_input(entry), format_response(entry)
            except (KeyError, ValueError) as err:
                raise type(err)(f"example {index} of the data: {err.args[0]}") from None
            self.encoded_texts.append(tokenizer.encode(prompt + response))
            # The prompt ends at a word boundary, so its tokens are a prefix of the full text's.
            self.prompt_lengths.append(len(tokenizer.encode(prompt)))

    def __getitem__(self, index: int):
        if self.with_prompt_length:
            return self.prompt_lengths[index], self.encoded_texts[index]
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)


def custom_collate_fn(
    batch: Sequence,
    pad_token_id: int = PAD_TOKEN_ID,
    ignore_index: int = IGNORE_INDEX,
    allowed_max_length: int | None = None,
    device: str | torch.device = "cpu",
    mask_instruction: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a list of token-id lists into (inputs, targets) tensors of shape (batch, longest).

    The book's final version: every sequence gets one ``pad_token_id`` appended (the end of
    the answer, which the model must learn to produce) and is padded to the longest sequence
    + 1; inputs are the padded sequences without their last token, targets without their
    first. Every padding target after that first end token becomes ``ignore_index``, so the
    padding adds nothing to the loss. ``allowed_max_length`` then truncates both.

    ``mask_instruction=True`` also sets the targets inside the prompt to ``ignore_index``,
    so that the model is only trained on the response (the book's exercise 7.2). The items
    must then be ``(prompt_length, token_ids)`` pairs: ``InstructionDataset(...,
    with_prompt_length=True)`` gives them. Pairs are accepted (lengths unused) without it.

    Use ``functools.partial`` to fix ``device`` or ``allowed_max_length`` for a DataLoader.
    """
    if len(batch) == 0:
        raise ValueError("custom_collate_fn got an empty batch")
    token_lists, prompt_lengths = _split_items(batch, mask_instruction)
    batch_max_length = max(len(ids) for ids in token_lists) + 1  # + 1: room for the end token

    inputs_lst, targets_lst = [], []
    for ids, prompt_length in zip(token_lists, prompt_lengths):
        padded = list(ids) + [pad_token_id] * (batch_max_length - len(ids))
        inputs = torch.tensor(padded[:-1], dtype=torch.long)
        targets = torch.tensor(padded[1:], dtype=torch.long)
        # targets[len(ids) - 1] is the first pad token: the end of the answer, kept.
        # Positions are counted rather than pad tokens compared (as the book does), so that
        # a pad id inside the text itself can never be mistaken for padding.
        targets[len(ids) :] = ignore_index
        if mask_instruction:
            targets[: prompt_length - 1] = ignore_index  # targets[i] is token i + 1
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)


def _split_items(batch: Sequence, mask_instruction: bool) -> tuple[list, list]:
    """Separate ``(prompt_length, token_ids)`` items into token lists and prompt lengths."""
    if all(_is_prompt_length_pair(item) for item in batch):
        return [ids for _, ids in batch], [length for length, _ in batch]
    if mask_instruction:
        raise ValueError(
            "mask_instruction=True needs (prompt_length, token_ids) items; "
            "build the dataset with InstructionDataset(data, tokenizer, with_prompt_length=True)"
        )
    return list(batch), [None] * len(batch)


def _is_prompt_length_pair(item) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[1], int)


def create_instruction_dataloader(
    data: Sequence[dict],
    tokenizer,
    batch_size: int = 8,
    shuffle: bool = True,
    drop_last: bool = True,
    allowed_max_length: int | None = 1024,
    device: str | torch.device = "cpu",
    mask_instruction: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader of (inputs, targets) batches of ``data``, collated by ``custom_collate_fn``.

    The book uses ``shuffle=True, drop_last=True`` for training and ``False, False`` for the
    validation and test sets; ``allowed_max_length=1024`` is GPT-2's context length.
    """
    dataset = InstructionDataset(data, tokenizer, with_prompt_length=mask_instruction)
    # A partial, unlike a closure, can be pickled: DataLoader workers (num_workers > 0) need that.
    collate = partial(
        custom_collate_fn, allowed_max_length=allowed_max_length, device=device, mask_instruction=mask_instruction
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=collate,
        num_workers=num_workers,
    )


# ---------------------------------------------------------------------------------------
# The fine-tuned model's answers
# ---------------------------------------------------------------------------------------


def extract_response(generated_text: str, input_text: str) -> str:
    """The answer alone: drop the prompt, the ``### Response:`` header and surrounding spaces."""
    return generated_text[len(input_text) :].replace("### Response:", "").strip()


def generate_responses(
    model,
    tokenizer,
    entries: Sequence[dict],
    device: str | torch.device,
    max_new_tokens: int = 256,
    context_size: int | None = None,
    show_progress: bool = True,
    fast=False,
) -> list[dict]:
    """Greedy answers to every entry's prompt: copies of the entries with a ``model_response`` key.

    Generation stops at ``<|endoftext|>``; ``fast`` is ``generate``'s. The model is put in eval mode (no dropout) while
    it answers and returned to its previous mode afterwards; ``entries`` are not changed.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    results = []
    try:
        for entry in tqdm(entries, desc="Generating responses", disable=not show_progress):
            input_text = format_input(entry)
            token_ids = generate(
                model,
                text_to_token_ids(input_text, tokenizer).to(device),
                max_new_tokens=max_new_tokens,
                context_size=context_size,
                eos_id=PAD_TOKEN_ID,
                fast=fast,
            )
            generated_text = token_ids_to_text(token_ids, tokenizer)
            results.append({**entry, "model_response": extract_response(generated_text, input_text)})
    finally:
        model.train(was_training)
    return results


def save_responses(entries: Sequence[dict], path: str | Path) -> Path:
    """Write ``entries`` as a JSON list (indent 4, as the book); atomic, so never half-written."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(json.dumps(list(entries), indent=4).encode("utf-8"))
    return path


def load_responses(path: str | Path) -> list[dict]:
    """Read back a file written by ``save_responses``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------
# An offline score: ROUGE-L F1 against the reference answer
# ---------------------------------------------------------------------------------------
#
# ROUGE-L compares two texts by their longest common subsequence (LCS) of words: the words
# both contain in the same order, not necessarily adjacent. With LCS words in common,
# precision = LCS / words of the response, recall = LCS / words of the reference, and
# F1 = 2 * precision * recall / (precision + recall). Words are runs of letters, digits and
# underscores after lower-casing, so case and punctuation do not count.
#
# It needs no other model and always works, but it only rewards shared words: a correct
# answer phrased differently scores low. The LLM judge (reference_impl.judge) does not
# have that blind spot.


def word_tokens(text: str) -> list[str]:
    """Lower-cased words: ``"The car, fast!"`` -> ``["the", "car", "fast"]``."""
    return re.findall(r"\w+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (dynamic programming, one row)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f1(response: str, reference: str) -> float:
    """ROUGE-L F1 of ``response`` against ``reference``, in [0, 1]; two empty texts score 1."""
    response_words, reference_words = word_tokens(response), word_tokens(reference)
    if not response_words and not reference_words:
        return 1.0
    common = lcs_length(response_words, reference_words)
    if common == 0:
        return 0.0
    precision = common / len(response_words)
    recall = common / len(reference_words)
    return 2 * precision * recall / (precision + recall)


class ResponseScores(NamedTuple):
    scores: list[float]  # per entry: 100 * ROUGE-L F1, in 0-100
    mean: float  # the mean of ``scores``
    exact_match: float  # percentage of responses whose words equal the reference's words


def score_responses(entries: Sequence[dict], response_key: str = "model_response") -> ResponseScores:
    """Score each ``entry[response_key]`` against ``entry["output"]``, 0-100 (see above)."""
    if len(entries) == 0:
        raise ValueError("score_responses got no entries to score")
    scores, matches = [], 0
    for i, entry in enumerate(entries):
        if response_key not in entry or "output" not in entry:
            raise KeyError(
                f"entry {i} needs the keys 'output' and {response_key!r} to be scored; it has {sorted(entry)}"
            )
        scores.append(100 * rouge_l_f1(entry[response_key], entry["output"]))
        matches += word_tokens(entry[response_key]) == word_tokens(entry["output"])
    return ResponseScores(scores, sum(scores) / len(scores), 100 * matches / len(entries))
