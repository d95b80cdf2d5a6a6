"""Every form of attention computes the same thing when given the same weights."""

import pytest
import torch

from reference_impl.attention import (
    CausalAttention,
    FusedMultiHeadAttention,
    KVCache,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    causal_mask,
    fuse_separate_qkv,
    merge_heads,
    split_heads,
)

# The book's six 3-d embeddings of "Your journey starts with one step"
INPUTS = torch.tensor(
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)


def test_simplified_attention_weights_of_the_book():
    scores = INPUTS @ INPUTS.T
    weights = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(6))
    torch.testing.assert_close(
        weights[1], torch.tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close((weights @ INPUTS)[1], torch.tensor([0.4419, 0.6515, 0.5683]), atol=1e-4, rtol=0)


def test_self_attention_v1_equals_v2_with_the_same_weights():
    torch.manual_seed(789)
    v2 = SelfAttention_v2(3, 2)
    v1 = SelfAttention_v1(3, 2)
    with torch.no_grad():
        v1.W_query.copy_(v2.W_query.weight.T)
        v1.W_key.copy_(v2.W_key.weight.T)
        v1.W_value.copy_(v2.W_value.weight.T)
    torch.testing.assert_close(v1(INPUTS), v2(INPUTS))


def test_causal_mask_hides_exactly_the_future():
    assert causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]


def test_causal_attention_weights_are_zero_above_the_diagonal():
    torch.manual_seed(123)
    ca = CausalAttention(3, 2, context_length=6, dropout=0.0)
    out = ca(torch.stack([INPUTS, INPUTS]))
    assert out.shape == (2, 6, 2)
    # The first token can only attend to itself: its context vector is its own value vector.
    torch.testing.assert_close(out[:, 0], ca.W_value(INPUTS[0]).expand(2, 2))


def test_split_and_merge_heads_are_inverse():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    heads = split_heads(x, num_heads=3)
    assert heads.shape == (2, 3, 4, 2)
    assert heads[0, 1, 2].tolist() == [14.0, 15.0]  # token 2, head 1 = features 2..3
    torch.testing.assert_close(merge_heads(heads), x)


def _copy_heads_into_mha(wrapper, mha):
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            stacked = torch.cat([getattr(h, name).weight for h in wrapper.heads], dim=0)
            getattr(mha, name).weight.copy_(stacked)
        mha.out_proj.weight.copy_(torch.eye(mha.d_out))
        mha.out_proj.bias.zero_()


def test_wrapper_equals_multi_head_attention_with_identity_projection():
    torch.manual_seed(123)
    x = torch.rand(2, 5, 4)
    wrapper = MultiHeadAttentionWrapper(4, 3, context_length=5, dropout=0.0, num_heads=2)
    mha = MultiHeadAttention(4, 6, context_length=5, dropout=0.0, num_heads=2)
    _copy_heads_into_mha(wrapper, mha)
    torch.testing.assert_close(mha(x), wrapper(x))


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_fused_attention_loads_the_book_layout_and_agrees(qkv_bias):
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    mha = MultiHeadAttention(16, 16, context_length=8, dropout=0.0, num_heads=4, qkv_bias=qkv_bias).eval()
    fused = FusedMultiHeadAttention(16, 16, context_length=8, dropout=0.0, num_heads=4, qkv_bias=qkv_bias).eval()
    fused.load_state_dict(mha.state_dict())
    torch.testing.assert_close(fused(x), mha(x), atol=1e-6, rtol=1e-5)


def test_fuse_separate_qkv_stacks_query_key_value_rows_for_every_layer_and_drops_the_mask():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 4, context_length=3, dropout=0.0, num_heads=2, qkv_bias=True)
    book = {f"blocks.{i}.att.{name}": value for i in (0, 1) for name, value in mha.state_dict().items()}
    book["blocks.0.norm.scale"] = torch.ones(4)
    fused = fuse_separate_qkv(book)
    assert sorted(fused) == [
        "blocks.0.att.out_proj.bias",
        "blocks.0.att.out_proj.weight",
        "blocks.0.att.qkv.bias",
        "blocks.0.att.qkv.weight",
        "blocks.0.norm.scale",
        "blocks.1.att.out_proj.bias",
        "blocks.1.att.out_proj.weight",
        "blocks.1.att.qkv.bias",
        "blocks.1.att.qkv.weight",
    ]
    expected = torch.cat([mha.W_query.weight, mha.W_key.weight, mha.W_value.weight])
    assert torch.equal(fused["blocks.1.att.qkv.weight"], expected)
    assert "blocks.0.att.W_query.weight" in book  # the input is not changed
    assert fuse_separate_qkv(book, prefix="blocks.1.").keys() >= {"blocks.0.att.W_query.weight"}


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match=r"d_out \(10\) must be divisible by num_heads \(4\)"):
        MultiHeadAttention(4, 10, context_length=4, dropout=0.0, num_heads=4)
    with pytest.raises(ValueError, match="divisible"):
        FusedMultiHeadAttention(4, 10, context_length=4, dropout=0.0, num_heads=4)


def test_kv_cache_gives_the_same_outputs_token_by_token_and_in_chunks():
    torch.manual_seed(1)
    att = FusedMultiHeadAttention(8, 8, context_length=10, dropout=0.0, num_heads=2).eval()
    x = torch.randn(2, 9, 8)
    full = att(x)
    cache = KVCache(n_layers=1, max_tokens=10)
    pieces = []
    for chunk in (x[:, :4], x[:, 4:5], x[:, 5:9]):  # a prefill, one token, then several at once
        pieces.append(att(chunk, cache, layer=0))
        cache.advance(chunk.shape[1])
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-6, rtol=1e-5)


def test_kv_cache_refuses_to_overflow():
    cache = KVCache(n_layers=1, max_tokens=3)
    k = torch.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match="KV cache is full"):
        cache.update(0, k, k)


def test_attention_dropout_is_active_in_training_only():
    torch.manual_seed(2)
    att = FusedMultiHeadAttention(8, 8, context_length=6, dropout=0.5, num_heads=2)
    x = torch.randn(1, 6, 8)
    att.train()
    assert not torch.allclose(att(x), att(x))
    att.eval()
    torch.testing.assert_close(att(x), att(x))
