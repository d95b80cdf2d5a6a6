"""LoRA (appendix E): a no-op at first, only A and B train, and the book's parameter count."""

import math

import pytest
import torch
from torch import nn

from reference_impl.attention import MultiHeadAttention
from reference_impl.lora import LinearWithLoRA, LoRALayer, freeze_for_lora, replace_linear_with_lora
from reference_impl.model import GPTConfig, TransformerBlock, count_parameters

TINY = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=True)


@pytest.fixture
def tiny_config():
    """The tiny model of these tests (conftest.py's tiny_model fixture builds it)."""
    return TINY


def book_freeze(model):
    for param in model.parameters():
        param.requires_grad = False


def trainable_names(model):
    return sorted(name for name, param in model.named_parameters() if param.requires_grad)


def test_lora_layer_computes_alpha_x_a_b():
    torch.manual_seed(0)
    layer = LoRALayer(in_dim=3, out_dim=2, rank=2, alpha=0.5)
    assert layer.A.shape == (3, 2) and layer.B.shape == (2, 2)
    assert torch.equal(layer.B, torch.zeros(2, 2))
    with torch.no_grad():
        layer.A.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        layer.B.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # x @ A = [4, 5]; [4, 5] @ B = [19, 28]; times alpha
    assert layer(x).tolist() == [[9.5, 14.0]]


def test_a_is_kaiming_uniform_like_nn_linear():
    # kaiming_uniform_(a=sqrt(5)) on an (in, rank) matrix: uniform in +-1/sqrt(rank).
    torch.manual_seed(0)
    A = LoRALayer(in_dim=512, out_dim=4, rank=16, alpha=1).A
    bound = 1 / math.sqrt(16)
    assert A.abs().max() <= bound
    assert A.abs().max() > 0.99 * bound  # 8,192 draws reach the edges
    assert abs(A.mean().item()) < 0.01


def test_wrapped_model_is_unchanged_at_initialisation(tiny_model):
    model = tiny_model()
    tokens = torch.randint(0, 50, (2, 8))
    before = model(tokens)
    replace_linear_with_lora(model, rank=4, alpha=8)
    assert torch.equal(model(tokens), before)


def test_every_linear_is_wrapped(tiny_model):
    model = replace_linear_with_lora(tiny_model(), rank=4, alpha=8)
    wrapped = sorted(name for name, module in model.named_modules() if isinstance(module, LinearWithLoRA))
    assert wrapped == [
        "out_head",
        *(
            f"trf_blocks.{i}.{part}"
            for i in range(2)
            for part in ("att.out_proj", "att.qkv", "ff.layers.0", "ff.layers.2")
        ),
    ]
    # the only plain Linears left are the ones inside the wrappers
    assert all(name.endswith(".linear") for name, m in model.named_modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("freeze", ["book order", "freeze_for_lora"])
def test_only_lora_matrices_are_trainable(freeze, tiny_model):
    model = tiny_model()
    if freeze == "book order":
        book_freeze(model)
        replace_linear_with_lora(model, rank=4, alpha=8)
    else:
        freeze_for_lora(replace_linear_with_lora(model, rank=4, alpha=8))
    names = trainable_names(model)
    assert len(names) == 2 * 9  # A and B of 9 linears
    assert all(name.endswith((".lora.A", ".lora.B")) for name in names)
    # rank * (in + out) per linear: per block qkv 4*(16+48), out_proj 4*(16+16),
    # feed-forward 4*(16+64) twice; then out_head 4*(16+50)
    per_block = 4 * (16 + 48) + 4 * (16 + 16) + 2 * 4 * (16 + 64)
    assert per_block == 1024
    assert count_parameters(model, trainable_only=True) == 2 * per_block + 4 * (16 + 50) == 2312


def lora_count_124m(book_attention: bool, num_classes: int | None) -> int:
    """Trainable LoRA parameters (rank 16) of GPT-2 small's linear layers.

    The 12 blocks and the output head, built on the meta device (no memory, no time); the
    embeddings are left out since they hold no nn.Linear.
    """
    cfg = GPTConfig.from_preset("gpt2-small (124M)", qkv_bias=True)
    with torch.device("meta"):
        blocks = nn.Sequential(*(TransformerBlock(cfg) for _ in range(cfg.n_layers)))
        if book_attention:  # the book's three separate W_query, W_key, W_value
            for block in blocks:
                block.att = MultiHeadAttention(768, 768, cfg.context_length, 0.0, 12, qkv_bias=True)
        # chapter 6's classifier head, or GPT-2's vocabulary head
        out_head = nn.Linear(cfg.emb_dim, num_classes) if num_classes else nn.Linear(cfg.emb_dim, cfg.vocab_size)
    model = nn.ModuleDict({"trf_blocks": blocks, "out_head": out_head})
    book_freeze(model)
    replace_linear_with_lora(model, rank=16, alpha=16)
    return count_parameters(model, trainable_only=True)


def test_book_figure_for_the_124m_classifier():
    # Appendix E: "Total trainable LoRA parameters: 2,666,528" for the spam classifier
    # (out_head = Linear(768, 2)), whose attention has separate query/key/value layers:
    # 12 * 16 * (3 * (768 + 768) + (768 + 768) + 2 * (768 + 3072)) + 16 * (768 + 2)
    assert lora_count_124m(book_attention=True, num_classes=2) == 2_666_528
    # GPTModel fuses them into one Linear(768, 2304): one adapter 16 * (768 + 2304) instead of three.
    assert lora_count_124m(book_attention=False, num_classes=2) == 2_371_616
    # With GPT-2's vocabulary head (tied or not), out_head adds 16 * (768 + 50257) instead.
    assert lora_count_124m(book_attention=False, num_classes=None) == 2_359_296 + 816_400 == 3_175_696


def test_one_optimizer_step_changes_only_lora_parameters(tiny_model):
    model = tiny_model()
    book_freeze(model)
    replace_linear_with_lora(model, rank=4, alpha=8)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    tokens = torch.randint(0, 50, (2, 8))
    model(tokens).logsumexp(-1).mean().backward()
    optimizer.step()
    after = model.state_dict()
    changed = sorted(name for name in before if not torch.equal(before[name], after[name]))
    assert all(name.endswith((".lora.A", ".lora.B")) for name in changed)
    # B starts at zero, so A's first gradient is zero too; but every B moves.
    assert {name for name in changed if name.endswith(".lora.B")} == {n for n in before if n.endswith(".lora.B")}


def test_tied_output_head_stays_tied(tiny_model):
    model = tiny_model(tie_embeddings=True)
    params_before = count_parameters(model)
    book_freeze(model)
    replace_linear_with_lora(model, rank=2, alpha=4)
    assert model.out_head.linear.weight is model.tok_emb.weight
    lora_per_block = 2 * (16 + 48) + 2 * (16 + 16) + 2 * 2 * (16 + 64)
    assert count_parameters(model) == params_before + 2 * lora_per_block + 2 * (16 + 50)  # tok_emb counted once
    tok_emb = model.tok_emb.weight.clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 50, (2, 8))).logsumexp(-1).mean().backward()
    optimizer.step()
    assert torch.equal(model.tok_emb.weight, tok_emb)
    assert model.out_head.linear.weight is model.tok_emb.weight


def test_rank_must_be_positive():
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        LoRALayer(4, 4, rank=0, alpha=1)
