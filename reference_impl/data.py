"""Input-target pairs for next-token prediction (chapter 2's sliding window)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


class GPTDatasetV1(Dataset):
    """Chunks of ``max_length`` token ids and the same chunks shifted one token to the right.

    Chunk ``i`` starts at token ``i * stride``; a ``stride`` equal to ``max_length`` gives
    non-overlapping chunks (no token is a target twice), a smaller one overlapping chunks.
    """

    def __init__(self, txt: str, tokenizer, max_length: int, stride: int):
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length and stride must be >= 1, got max_length={max_length}, stride={stride}")
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        if len(token_ids) <= max_length:
            raise ValueError(
                f"the text has {len(token_ids)} tokens: it needs more than max_length={max_length} "
                "to make even one input-target pair"
            )
        ids = torch.tensor(token_ids, dtype=torch.long)
        starts = range(0, len(token_ids) - max_length, stride)
        # Views into one tensor, built once, so that __getitem__ is a cheap lookup.
        self.input_ids = [ids[i : i + max_length] for i in starts]
        self.target_ids = [ids[i + 1 : i + max_length + 1] for i in starts]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(
    txt: str,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    tokenizer=None,
) -> DataLoader:
    """A ``DataLoader`` of (inputs, targets) batches over ``txt``, tokenised with GPT-2's BPE."""
    if tokenizer is None:
        from .tokenizer import get_tokenizer

        tokenizer = get_tokenizer("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)
