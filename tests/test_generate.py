"""Text generation: the greedy loop, sampling options, the KV cache, and bad prompts."""

import pytest
import torch

from reference_impl.generate import generate, generate_text_simple, text_to_token_ids, token_ids_to_text
from reference_impl.model import GPTConfig

TINY = GPTConfig(vocab_size=61, context_length=12, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)


@pytest.fixture
def tiny_config():
    return TINY


@pytest.fixture
def model(tiny_model):
    return tiny_model()


def test_greedy_loop_appends_the_argmax_token(model):
    idx = torch.tensor([[5, 7, 11]])
    out = generate_text_simple(model, idx, max_new_tokens=1, context_size=12)
    expected = model(idx)[0, -1].argmax().item()
    assert out.tolist() == [[5, 7, 11, expected]]


@pytest.mark.parametrize("prompt_len, new", [(1, 20), (4, 30), (12, 5), (20, 10)])
def test_cached_and_uncached_generation_give_identical_tokens(model, prompt_len, new):
    torch.manual_seed(0)
    idx = torch.randint(0, 61, (2, prompt_len))
    with_cache = generate(model, idx, new, use_cache=True)
    without = generate(model, idx, new, use_cache=False)
    book = generate_text_simple(model, idx, new, context_size=12)
    assert with_cache.shape == (2, prompt_len + new)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache, book)


def test_a_prompt_longer_than_the_context_is_cropped_to_its_last_tokens(model):
    idx = torch.randint(0, 61, (1, 30))
    out = generate(model, idx, 3)
    assert torch.equal(out[:, :30], idx)  # the whole prompt is returned
    assert torch.equal(out[:, 30:], generate(model, idx[:, -12:], 3)[:, 12:])


def test_sampling_is_seeded_and_top_k_limits_the_choice(model):
    idx = torch.tensor([[1, 2, 3]])
    torch.manual_seed(42)
    a = generate(model, idx, 10, temperature=1.5, top_k=3)
    torch.manual_seed(42)
    b = generate(model, idx, 10, temperature=1.5, top_k=3, use_cache=False)
    assert torch.equal(a, b)
    # with top_k=1, sampling at any temperature is greedy
    torch.manual_seed(1)
    assert torch.equal(generate(model, idx, 10, temperature=5.0, top_k=1), generate(model, idx, 10))


def test_generation_stops_at_the_end_token_without_appending_it(model):
    idx = torch.tensor([[1, 2, 3]])
    greedy = generate(model, idx, 8)
    eos = greedy[0, 5].item()  # the third generated token
    first = (greedy[0, 3:] == eos).nonzero()[0].item() + 3
    out = generate(model, idx, 8, eos_id=eos)
    assert torch.equal(out, greedy[:, :first])


def test_in_a_batch_finished_sequences_are_padded_with_the_end_token(model):
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = generate(model, idx, 6)
    eos = greedy[0, 3].item()  # sequence 0 ends at once
    out = generate(model, idx, 6, eos_id=eos)
    assert (out[0, 3:] == eos).all()
    row1 = greedy[1, 3:].tolist()
    if eos in row1:  # sequence 1 stops at its own end token
        row1 = row1[: row1.index(eos)]
    assert out[1, 3 : 3 + len(row1)].tolist() == row1


@pytest.mark.parametrize(
    "idx, kwargs, error, message",
    [
        (torch.zeros(1, 0, dtype=torch.long), {}, ValueError, "prompt is empty"),
        (torch.tensor([1, 2]), {}, ValueError, r"\(batch, tokens\)"),
        (torch.ones(1, 2), {}, TypeError, "integer token ids"),
        (torch.ones(1, 2, dtype=torch.long), {"temperature": -1.0}, ValueError, "temperature"),
        (torch.ones(1, 2, dtype=torch.long), {"top_k": 0}, ValueError, "top_k"),
    ],
)
def test_bad_prompts_and_options_are_refused(model, idx, kwargs, error, message):
    with pytest.raises(error, match=message):
        generate(model, idx, 3, **kwargs)


def test_text_round_trip_through_token_ids():
    from reference_impl.tokenizer import get_tokenizer

    tokenizer = get_tokenizer("gpt2")
    ids = text_to_token_ids("Every effort moves you<|endoftext|>", tokenizer)
    assert ids.tolist() == [[6109, 3626, 6100, 345, 50256]]
    assert token_ids_to_text(ids, tokenizer) == "Every effort moves you<|endoftext|>"


@pytest.mark.parametrize(
    "max_new_tokens, context_size, message",
    [(-1, None, "max_new_tokens must be an integer >= 0, got -1"), (2, 0, "context_size must be a positive integer")],
)
def test_negative_lengths_are_refused_by_both_generators(model, max_new_tokens, context_size, message):
    prompt = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        generate(model, prompt, max_new_tokens, context_size=context_size, use_cache=False)
    with pytest.raises(ValueError, match=message):
        generate_text_simple(model, prompt, max_new_tokens, context_size if context_size is not None else 12)


def test_a_token_id_outside_the_vocabulary_names_the_id_and_the_vocabulary_size(model):
    with pytest.raises(
        ValueError, match=r"token id 61 is outside the vocabulary: .*between 0 and 60 \(vocab_size=61\)"
    ):
        model(torch.tensor([[1, 61, 2]]))


def test_nan_weights_stop_decoding_with_a_reason_instead_of_emitting_token_0(model):
    with torch.no_grad():
        model.final_norm.scale.fill_(float("nan"))
    prompt = torch.ones(1, 2, dtype=torch.long)
    for decode in (lambda: generate(model, prompt, 3), lambda: generate_text_simple(model, prompt, 3, 12)):
        with pytest.raises(ValueError, match="logits contain NaN or infinity"):
            decode()
