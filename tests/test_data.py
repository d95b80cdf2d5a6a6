"""Sliding-window input-target pairs and the data loader."""

import pytest
import torch

from reference_impl.data import GPTDatasetV1, create_dataloader_v1
from reference_impl.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer("gpt2")


def test_targets_are_inputs_shifted_by_one(tokenizer, verdict_text):
    ds = GPTDatasetV1(verdict_text, tokenizer, max_length=4, stride=1)
    ids = tokenizer.encode(verdict_text)
    assert len(ids) == 5145
    assert len(ds) == 5145 - 4
    x, y = ds[0]
    assert x.tolist() == [40, 367, 2885, 1464]
    assert y.tolist() == [367, 2885, 1464, 1807]
    x1, _ = ds[1]
    assert x1.tolist() == [367, 2885, 1464, 1807]


def test_stride_equal_to_max_length_gives_non_overlapping_chunks(tokenizer, verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (8, 4)
    assert inputs[:2].tolist() == [[40, 367, 2885, 1464], [1807, 3619, 402, 271]]
    assert inputs.dtype == torch.long
    # chunk i+1 starts exactly where chunk i's targets end: no token is skipped or repeated
    assert torch.equal(inputs[1:, 0], targets[:-1, -1])


def test_the_books_loader_sizes(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=2, max_length=256, stride=256, shuffle=False)
    assert len(loader.dataset) == 20  # (5145 - 256) / 256, rounded up
    assert len(loader) == 10


def test_shuffling_is_seeded(verdict_text):
    def first_batch(seed):
        torch.manual_seed(seed)
        return next(iter(create_dataloader_v1(verdict_text, batch_size=4, max_length=8, stride=8)))[0]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_a_text_too_short_for_one_pair_is_refused(tokenizer):
    with pytest.raises(ValueError, match="needs more than max_length=8"):
        GPTDatasetV1("only five tokens here", tokenizer, max_length=8, stride=1)
    with pytest.raises(ValueError, match="stride"):
        GPTDatasetV1("text", tokenizer, max_length=4, stride=0)
