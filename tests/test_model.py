"""GPTConfig and GPTModel: presets, parameter counts, shapes, causality, determinism, bad input."""

import math

import pytest
import torch

from reference_impl.model import (
    GELU,
    PRESETS,
    FeedForward,
    GPTConfig,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    count_parameters,
    model_size_mb,
)

TINY = GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)


@pytest.fixture
def tiny_config():
    """The tiny model of these tests (conftest.py's tiny_model fixture builds it)."""
    return TINY


@pytest.mark.parametrize(
    "name, emb_dim, n_layers, n_heads",
    [
        ("gpt2-small (124M)", 768, 12, 12),
        ("gpt2-medium (355M)", 1024, 24, 16),
        ("gpt2-large (774M)", 1280, 36, 20),
        ("gpt2-xl (1558M)", 1600, 48, 25),
    ],
)
def test_presets_are_the_gpt2_sizes(name, emb_dim, n_layers, n_heads):
    cfg = GPTConfig.from_preset(name)
    assert (cfg.emb_dim, cfg.n_layers, cfg.n_heads) == (emb_dim, n_layers, n_heads)
    assert (cfg.vocab_size, cfg.context_length) == (50257, 1024)


def test_presets_by_short_name_and_with_overrides():
    assert GPTConfig.from_preset("gpt2-small") == PRESETS["gpt2-small (124M)"]
    assert GPTConfig.from_preset("355M") == PRESETS["gpt2-medium (355M)"]
    cfg = GPTConfig.from_preset("gpt2-small (124M)", context_length=256, qkv_bias=True)
    assert (cfg.context_length, cfg.qkv_bias, cfg.emb_dim) == (256, True, 768)


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model preset 'gpt3'.*gpt2-small \(124M\).*gpt2-xl \(1558M\)"):
        GPTConfig.from_preset("gpt3")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"emb_dim": 30}, r"emb_dim \(30\) must be divisible by n_heads \(4\)"),
        ({"n_layers": 0}, "n_layers must be a positive integer"),
        ({"drop_rate": 1.0}, r"drop_rate must be in \[0, 1\)"),
    ],
)
def test_invalid_configurations_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_the_books_dict_configuration_is_accepted_and_checked():
    book_cfg = {
        "vocab_size": 97,
        "context_length": 16,
        "emb_dim": 32,
        "n_heads": 4,
        "n_layers": 2,
        "drop_rate": 0.0,
        "qkv_bias": False,
    }
    assert GPTModel(book_cfg).cfg == TINY
    with pytest.raises(ValueError, match="unknown configuration keys"):
        GPTModel({**book_cfg, "emb_size": 32})


def test_parameter_counts_of_gpt2_small_match_the_book():
    cfg = GPTConfig.from_preset("gpt2-small (124M)")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = GPTModel(cfg)
        tied = GPTModel(cfg.replace(tie_embeddings=True))
    assert count_parameters(model) == 163_009_536
    assert count_parameters(model) - model.out_head.weight.numel() == 124_412_160
    assert count_parameters(tied) == 124_412_160
    assert tied.out_head.weight is tied.tok_emb.weight
    assert sum(p.numel() for p in model.trf_blocks[0].ff.parameters()) == 4_722_432
    assert sum(p.numel() for p in model.trf_blocks[0].att.parameters()) == 2_360_064
    assert model_size_mb(model) == pytest.approx(621.83, abs=0.01)


def test_layer_norm_normalises_each_token():
    torch.manual_seed(123)
    x = torch.randn(2, 5) * 3 + 7
    out = LayerNorm(5)(x)
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.var(dim=-1, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    by_hand = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)
    torch.testing.assert_close(out, by_hand)


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-4, 4, 101)
    formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), formula)


def test_feed_forward_and_block_keep_the_shape():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 32)
    assert FeedForward(TINY)(x).shape == (2, 4, 32)
    assert TransformerBlock(TINY)(x).shape == (2, 4, 32)


def test_logits_have_shape_batch_tokens_vocab(tiny_model):
    model = tiny_model()
    assert model(torch.randint(0, 97, (3, 10))).shape == (3, 10, 97)


def test_a_later_token_never_changes_earlier_outputs(tiny_model):
    model = tiny_model()
    idx = torch.randint(0, 97, (2, 12))
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 97
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_eval_mode_is_deterministic_and_training_mode_uses_dropout(tiny_model):
    model = tiny_model(drop_rate=0.2)
    idx = torch.randint(0, 97, (2, 8))
    torch.testing.assert_close(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))


def test_seeded_initialisation_is_reproducible(tiny_model):
    a, b = tiny_model(seed=7), tiny_model(seed=7)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(tiny_model(seed=8).tok_emb.weight, a.tok_emb.weight)


def test_the_book_layout_of_attention_weights_loads_into_the_model(tiny_model):
    model = tiny_model()
    state = model.state_dict()
    book_state = {}
    for key, value in state.items():
        if ".att.qkv." in key:
            for part, chunk in zip(("W_query", "W_key", "W_value"), value.chunk(3, dim=0)):
                book_state[key.replace("qkv", part)] = chunk
        else:
            book_state[key] = value
    other = tiny_model(seed=99)
    other.load_state_dict(book_state)
    idx = torch.randint(0, 97, (1, 6))
    torch.testing.assert_close(other(idx), model(idx))


@pytest.mark.parametrize(
    "idx, error, message",
    [
        (torch.rand(1, 4), TypeError, "token ids must be integers"),
        (torch.tensor([1, 2, 3]), ValueError, r"shape \(batch, tokens\).*unsqueeze"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, "empty"),
        (torch.zeros(1, 17, dtype=torch.long), ValueError, "17 tokens exceed the context length 16"),
    ],
)
def test_bad_input_gets_a_clear_error(idx, error, message, tiny_model):
    with pytest.raises(error, match=message):
        tiny_model()(idx)


def test_gradients_reach_every_parameter(tiny_model):
    model = tiny_model().train()
    idx = torch.randint(0, 97, (2, 8))
    model(idx).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
