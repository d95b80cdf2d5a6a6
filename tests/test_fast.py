"""reference_impl.fast: the fast path is the same computation as the default one, only quicker.

Exact where the maths is the same (the fused head + loss against F.cross_entropy, float32 to
round-off), loose where bfloat16 rounds (a forced ``FastPath(bf16=True)``, which this test
machine may only emulate: tiny sizes keep it quick).
"""

import resource

import pytest
import torch
import torch.nn.functional as F

from reference_impl import classify
from reference_impl.data import create_dataloader_v1
from reference_impl.fast import (
    FastPath,
    fused_adamw,
    keep_freed_memory,
    linear_cross_entropy,
    resolve,
    transposed_linear_weights,
)
from reference_impl.generate import generate
from reference_impl.lora import replace_linear_with_lora
from reference_impl.model import GPTConfig, GPTModel
from reference_impl.train import train_model_simple

BF16 = FastPath("cpu", bf16=True)  # forced, whatever this CPU has
FP32 = FastPath("cpu", bf16=False)


def head_and_targets(tokens=37, emb_dim=24, vocab=301, ignored=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, emb_dim, generator=generator, requires_grad=True)
    weight = (0.3 * torch.randn(vocab, emb_dim, generator=generator)).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    targets[:ignored] = -100
    return hidden, weight, targets


def loss_and_grads(loss_fn, hidden, weight, targets):
    hidden.grad = weight.grad = None
    loss = loss_fn(hidden, weight, targets)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), weight.grad.clone()


def reference_loss(hidden, weight, targets):
    return F.cross_entropy(hidden @ weight.t(), targets)


# ---------------------------------------------------------------------------------------
# The fused output head + cross-entropy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ignored", [0, 5, 36])
def test_fused_head_and_loss_equal_cross_entropy_and_its_gradients(ignored):
    hidden, weight, targets = head_and_targets(ignored=ignored)  # 37 rows: blocks of 16 and a ragged end
    expected = loss_and_grads(reference_loss, hidden, weight, targets)
    fused = loss_and_grads(linear_cross_entropy, hidden, weight, targets)
    for ours, theirs in zip(fused, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_without_gradients_it_gives_the_same_loss_and_keeps_nothing():
    hidden, weight, targets = head_and_targets()
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, reference_loss(hidden, weight, targets).detach(), rtol=1e-6, atol=1e-6)


def test_every_target_ignored_gives_nan_and_zero_gradients_like_cross_entropy():
    hidden, weight, targets = head_and_targets(ignored=37)
    loss, grad_hidden, grad_weight = loss_and_grads(linear_cross_entropy, hidden, weight, targets)
    assert torch.isnan(loss) and torch.isnan(reference_loss(hidden, weight, targets))
    assert not grad_hidden.any() and not grad_weight.any()


def test_a_scaled_loss_scales_the_gradients():
    hidden, weight, targets = head_and_targets()
    _, grad_hidden, grad_weight = loss_and_grads(linear_cross_entropy, hidden, weight, targets)
    _, grad_hidden3, grad_weight3 = loss_and_grads(lambda *a: 3 * linear_cross_entropy(*a), hidden, weight, targets)
    torch.testing.assert_close(grad_hidden3, 3 * grad_hidden)
    torch.testing.assert_close(grad_weight3, 3 * grad_weight)


def test_under_bf16_autocast_it_matches_autocast_cross_entropy_to_bf16_round_off():
    hidden, weight, targets = head_and_targets()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = loss_and_grads(linear_cross_entropy, hidden, weight, targets)
        expected = loss_and_grads(lambda h, w, t: F.cross_entropy((h @ w.t()).float(), t), hidden, weight, targets)
    exact = loss_and_grads(reference_loss, hidden, weight, targets)
    assert fused[0].dtype == torch.float32
    torch.testing.assert_close(fused[0], expected[0], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(fused[0], exact[0], rtol=1e-2, atol=1e-2)  # bf16 products: ~3 significant digits
    torch.testing.assert_close(fused[1], exact[1], rtol=0.05, atol=2e-3)


def test_bad_shapes_and_targets_are_named():
    hidden, weight, targets = head_and_targets()
    with pytest.raises(ValueError, match="expects hidden"):
        linear_cross_entropy(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="features"):
        linear_cross_entropy(hidden[:, :-1], weight, targets)
    targets[7] = 301
    with pytest.raises(ValueError, match="target id 301 is outside the vocabulary of 301"):
        linear_cross_entropy(hidden, weight, targets)


# ---------------------------------------------------------------------------------------
# GPTModel(in_idx, targets=...)
# ---------------------------------------------------------------------------------------

SMALL = GPTConfig(vocab_size=97, context_length=16, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)


@pytest.mark.parametrize("tied", [False, True])
def test_the_model_with_targets_returns_the_mean_cross_entropy_of_its_logits(tied):
    torch.manual_seed(0)
    model = GPTModel(SMALL.replace(tie_embeddings=tied))
    inputs, targets = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    targets[0, :4] = -100
    expected = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    expected.backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss = model(inputs, targets=targets)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    for ours, theirs in zip((p.grad for p in model.parameters()), expected_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_a_lora_head_falls_back_to_the_plain_loss_and_wrong_target_shapes_are_refused():
    torch.manual_seed(0)
    model = GPTModel(SMALL)
    replace_linear_with_lora(model, rank=2, alpha=4)
    inputs, targets = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(
        model(inputs, targets=targets), F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    )
    with pytest.raises(ValueError, match=r"targets must have the shape of the token ids \(2, 16\), got \(2, 15\)"):
        model(inputs, targets=targets[:, :-1])


# ---------------------------------------------------------------------------------------
# The loops and generate with fast=...
# ---------------------------------------------------------------------------------------

TEXT = "Every effort moves you forward, one small step at a time. " * 12
CHARS = sorted(set(TEXT))


class CharTokenizer:
    def encode(self, text, allowed_special=None):
        return [CHARS.index(c) for c in text]

    def decode(self, ids):
        return "".join(CHARS[i] for i in ids)


TINY = GPTConfig(vocab_size=len(CHARS), context_length=8, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.1)


def train_tiny(fast, epochs=3):
    torch.manual_seed(0)
    model = GPTModel(TINY)
    train_loader = create_dataloader_v1(TEXT, 4, 8, 8, shuffle=True, tokenizer=CharTokenizer())
    val_loader = create_dataloader_v1(TEXT[:200], 4, 8, 8, shuffle=False, tokenizer=CharTokenizer())
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.1)
    history = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", epochs, 5, 2, None, None, show_progress=False, fast=fast
    )
    return history, optimizer, model


def test_fast_training_follows_the_float32_loss_curve():
    reference, _, _ = train_tiny(False)
    fast, optimizer, _ = train_tiny(FP32)
    bf16, _, _ = train_tiny(BF16)
    assert len(fast.val_losses) == len(reference.val_losses) == 13
    for losses in (fast.train_losses, fast.val_losses):
        reference_losses = reference.train_losses if losses is fast.train_losses else reference.val_losses
        assert losses == pytest.approx(reference_losses, rel=0.02)  # only the rounding differs
    assert bf16.val_losses == pytest.approx(reference.val_losses, rel=0.05)  # bfloat16 products
    assert reference.val_losses[-1] < 0.6 * reference.val_losses[0]  # it did learn
    # The loop switched AdamW to its fused kernel for the run only.
    assert all(group["fused"] is None and group["foreach"] is None for group in optimizer.param_groups)


def test_fast_is_checked_and_resolves_per_device():
    assert resolve(False, "cpu") is None and resolve(None, "cpu") is None
    assert resolve(BF16, "cpu") is BF16
    assert resolve(True, "cpu").device_type == "cpu"
    assert "fast path on cpu" in resolve(True, "cpu").describe()
    with pytest.raises(TypeError, match="fast must be True, False or a reference_impl.fast.FastPath"):
        train_tiny("yes", epochs=1)


def test_fast_generation_gives_valid_tokens_and_equals_float32_without_bf16():
    torch.manual_seed(0)
    model = GPTModel(SMALL).eval()
    prompt = torch.randint(0, 97, (2, 3))
    expected = generate(model, prompt, 10)
    assert torch.equal(generate(model, prompt, 10, fast=FP32), expected)
    out = generate(model, prompt, 10, fast=BF16)
    assert out.shape == expected.shape and out.dtype == torch.long and bool((out < 97).all())
    assert torch.equal(out[:, :3], prompt)


def test_fast_generation_applies_a_biased_head_too():
    torch.manual_seed(0)
    model = GPTModel(SMALL).eval()
    model.out_head = torch.nn.Linear(16, 97)  # the transposed copy must keep the bias
    prompt = torch.randint(0, 97, (1, 4))
    assert torch.equal(generate(model, prompt, 8, fast=FP32), generate(model, prompt, 8))


def test_transposed_weights_give_the_same_outputs_inside_the_block_only():
    torch.manual_seed(0)
    model = GPTModel(SMALL).eval()
    replace_linear_with_lora(model, rank=2, alpha=4)  # LoRA's inner Linear layers are switched too
    inputs = torch.randint(0, 97, (2, 9))
    expected = model(inputs)
    with transposed_linear_weights(model):
        assert "forward" in vars(model.trf_blocks[0].att.qkv.linear)
        torch.testing.assert_close(model(inputs), expected, rtol=1e-5, atol=1e-5)
    assert not any("forward" in vars(module) for module in model.modules())
    with pytest.raises(RuntimeError, match="boom"), transposed_linear_weights(model):
        raise RuntimeError("boom")
    assert not any("forward" in vars(module) for module in model.modules())  # restored after an error too


def test_fast_classifier_training_tracks_the_float32_run():
    def run(fast):
        torch.manual_seed(0)
        model = classify.prepare_for_classification(GPTModel(SMALL), num_classes=2)
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randint(1, 97, (24, 10), generator=generator)
        labels = (inputs[:, -1] > 48).long()  # learnable from the last token
        loader = torch.utils.data.DataLoader(list(zip(inputs, labels)), batch_size=8)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return classify.train_classifier_simple(
            model, loader, loader, optimizer, "cpu", 2, 1, 1, show_progress=False, pad_token_id=None, fast=fast
        )

    reference, fast = run(False), run(FP32)
    assert fast[0] == pytest.approx(reference[0], rel=0.02) and fast[2] == reference[2]


# ---------------------------------------------------------------------------------------
# Loop-wide settings
# ---------------------------------------------------------------------------------------


def test_fused_adamw_switches_plain_adam_only_and_restores_it():
    params = [torch.nn.Parameter(torch.randn(3))]
    adamw = torch.optim.AdamW(params)
    with fused_adamw(adamw) as switched:
        assert switched and adamw.param_groups[0]["fused"] is True
    assert adamw.param_groups[0]["fused"] is None
    for chosen in (torch.optim.AdamW(params, foreach=True), torch.optim.SGD(params, lr=0.1)):
        with fused_adamw(chosen) as switched:
            assert not switched


@pytest.mark.skipif(not hasattr(resource, "getrusage"), reason="needs getrusage")
def test_inside_keep_freed_memory_a_freed_large_tensor_is_reused_without_new_page_faults():
    def faults_of_a_fresh_64mb_tensor():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 1024 * 1024)  # 64 MB, freed at once
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with keep_freed_memory() as kept:
        if not kept:
            pytest.skip("not glibc: keep_freed_memory is a no-op here")
        inside = min(faults_of_a_fresh_64mb_tensor() for _ in range(4))  # once the heap has grown
    outside = faults_of_a_fresh_64mb_tensor()
    if outside < 10_000:  # not 16,384 pages of 4 KB: huge pages (THP "always"), nothing to compare
        pytest.skip(f"a fresh 64 MB tensor took only {outside} page faults here (transparent huge pages?)")
    assert inside < 1_000
