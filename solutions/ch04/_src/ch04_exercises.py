# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,language_info,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   language_info:
#     name: python
#     pygments_lexer: ipython3
# ---

# %% [markdown]
# # Chapter 4 exercises: implementing a GPT model from scratch
#
# These exercises make you write the code of chapter 4 yourself: the layer normalisation,
# GELU and feed-forward parts of a transformer block, the block itself, the whole GPT model,
# how many parameters it has, and the loop that makes it generate text. The checks use tiny
# configurations and random weights: no pretrained weights are needed, and each check runs in
# about a second. Exercises 8, 9 and 10 are the book's exercises 4.1 (where the parameters
# are), 4.3 (a dropout rate for each place) and A.3 (the parameters of appendix A's network);
# the last one asks you to predict a few results before you run them.
#
# Exercises 4, 6 and 9 give you the course's versions of the parts they build on (from
# `reference_impl`), so that each exercise is graded on its own; you may call those parts,
# and only those, where the exercise says so.
#
# How they work:
#
# * Each exercise has a cell with `# YOUR CODE HERE` and `raise NotImplementedError()`:
#   replace those two lines with your code (keep the function or class name and its arguments).
# * Run the cell below it: its checks compare your code with the course's reference
#   implementation on small inputs and say what is wrong when a check fails. When grading,
#   the same cell runs again with more (hidden) checks. You get an exercise's points when
#   all its checks pass.
# * Write the code yourself. The checks notice when your code calls the reference
#   implementation (`reference_impl`) instead, except where an exercise says you may.
# * Each exercise is graded on its own: a helper from another exercise may be copied, but if
#   you call it and it is unfinished, this exercise fails too.
# * Do not edit or delete the checks cells: grading restores them anyway. Do not redefine
#   what the checks use (`expect_close` and the other checks, `torch`'s functions,
#   `reference_impl`'s): grading puts the originals back and gives that exercise 0.
# * Run the setup cell first; before you submit, run *Kernel > Restart & Run All*.
#
# | exercise | points |
# |---|---|
# | 1. Layer normalisation | 1 |
# | 2. The GELU activation | 1 |
# | 3. The feed-forward module | 2 |
# | 4. The transformer block | 2 |
# | 5. Counting the parameters of a GPT | 2 |
# | 6. The GPT model | 3 |
# | 7. Generating text, greedily | 3 |
# | 8. Attention or feed-forward: where are the parameters? | 1 |
# | 9. A dropout rate for each place | 2 |
# | 10. The network of appendix A and its parameters | 2 |
# | 11. Predict before you run | 1 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
import copy
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

import reference_impl.attention  # the course's parts that exercises 4 and 6 give you
import reference_impl.model
from course_tools.checks import (
    CheckFailed,
    expect_close,
    expect_equal,
    expect_own_implementation,
    expect_shape,
    expect_true,
    expect_type,
    forbid_reference_impl,
    show_warnings_on_stdout,
)
from reference_impl.model import GPTConfig  # the configuration of chapter 4

show_warnings_on_stdout()

# The smallest GPT-2 (section 4.1) as the chapter writes it: a GPTConfig, whose fields are
# attributes (cfg.emb_dim). Frozen: no code can change it by accident.
GPT_CONFIG_124M = GPTConfig.from_preset("gpt2-small (124M)")


def tiny_config(**changes):
    """A small GPTConfig for quick experiments and checks; keyword arguments change fields."""
    cfg = GPTConfig(vocab_size=50, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)
    return cfg.replace(**changes)


def known_mistake(actual, expected, mistakes):
    """The explanation of the first known mistake whose output ``actual`` equals (within float
    rounding) while the expected output differs from it, or None. ``mistakes`` is a list of
    (the output that mistake gives, explanation)."""

    def same(a, b):
        return (isinstance(a, torch.Tensor) and a.shape == b.shape
                and torch.allclose(a.detach(), b.detach(), rtol=1e-5, atol=1e-6, equal_nan=True))

    for output, explanation in mistakes:
        if same(actual, output) and not same(expected, output):
            return explanation
    return None


print("GPT_CONFIG_124M:", GPT_CONFIG_124M)


# %% [markdown]
# ## Exercise 1 (1 point): layer normalisation
#
# Write the `forward` method of the book's `LayerNorm` (section 4.2). For each token
# (over the last dimension, `dim=-1`, with `keepdim=True`):
#
# * subtract the mean and divide by `sqrt(var + eps)`, where `var` is the **biased**
#   variance (the mean of the squared deviations, dividing by `n`, not `n - 1`:
#   `x.var(dim=-1, keepdim=True, unbiased=False)`), as GPT-2 was trained; `eps = 1e-5`
#   keeps the division finite when all features are equal;
# * then apply the trainable `scale` and `shift` (given): `scale * norm_x + shift`.
#
# Write the formula yourself: the checks do not accept `F.layer_norm` or `nn.LayerNorm`.

# %% nbgrader={"grade": false, "grade_id": "ex1_layer_norm_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class LayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        ### BEGIN SOLUTION
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased, as GPT-2 was trained
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_layer_norm_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

no_layer_norm = mock.patch.object(F, "layer_norm", side_effect=CheckFailed(
    "write the normalisation yourself instead of calling F.layer_norm or nn.LayerNorm"))
torch.manual_seed(123)
batch = torch.randn(2, 5)  # two examples with five features, as in section 4.2
with forbid_reference_impl(), no_layer_norm:
    ln = LayerNorm(5)
    out = ln(batch)
expect_own_implementation(ln, "your LayerNorm")
expect_shape(out, (2, 5), "LayerNorm(5)(batch)", hint="the same shape as the input")
expect_close(out.mean(dim=-1), torch.zeros(2), "the mean of each output row", atol=1e-5,
             hint="subtract the mean over the last dimension: x.mean(dim=-1, keepdim=True)")
expect_close(out.var(dim=-1, unbiased=False), torch.ones(2), "the (biased) variance of each output row", atol=1e-4,
             hint="divide by sqrt(var + eps) with the biased variance: x.var(dim=-1, keepdim=True, unbiased=False)")
expected_module = reference.LayerNorm(5)
with torch.no_grad():  # random scale and shift, so that both must be applied
    expected_module.scale.normal_()
    expected_module.shift.normal_()
with forbid_reference_impl(), no_layer_norm:
    ln.load_state_dict(expected_module.state_dict())


def expect_layer_norm(x, what):
    """Run your LayerNorm(5) on x and compare with the reference, naming known mistakes."""
    with forbid_reference_impl(), no_layer_norm:
        out = ln(x)
    expected = expected_module(x)
    deviation, var = x - x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)
    scale, shift = expected_module.scale.detach(), expected_module.shift.detach()
    mistake = known_mistake(out, expected, [
        (scale * deviation / torch.sqrt(var) + shift,
         "it matches (x - mean) / torch.sqrt(var) without eps: add eps inside the square root, "
         "torch.sqrt(var + self.eps), which keeps the division finite when the variance is 0"),
        (scale * deviation / (torch.sqrt(var) + 1e-5) + shift,
         "it matches (x - mean) / (torch.sqrt(var) + eps): eps belongs inside the square root, "
         "torch.sqrt(var + self.eps), as GPT-2 computes it"),
        (scale * deviation / torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-5) + shift,
         "it matches the unbiased variance (dividing by n - 1): use x.var(dim=-1, keepdim=True, unbiased=False)"),
        (deviation / torch.sqrt(var + 1e-5),
         "it matches norm_x without the trainable scale and shift: return self.scale * norm_x + self.shift"),
    ])
    expect_true(mistake is None, f"LayerNorm(5) on {what}: {mistake}")
    expect_true(bool(torch.isfinite(out).all()), f"LayerNorm(5) gives NaN or inf for {what}: "
                "add eps inside the square root, torch.sqrt(var + self.eps)")
    expect_close(out, expected, f"LayerNorm(5) on {what}", atol=1e-5,
                 hint="norm_x = (x - mean) / torch.sqrt(var + self.eps) with the biased variance, "
                      "then return self.scale * norm_x + self.shift")


expect_layer_norm(batch, "the batch, with random scale and shift")
# Where eps goes matters most when the variance is about as small as eps (1e-5), or 0.
expect_layer_norm(3e-3 * torch.randn(3, 5), "inputs with a tiny variance (about 1e-5, as small as eps)")
expect_layer_norm(torch.full((2, 5), 7.0), "rows whose features are all equal (variance 0)")
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
torch.manual_seed(321)
expected_module = reference.LayerNorm(16)
with torch.no_grad():
    expected_module.scale.normal_()
    expected_module.shift.normal_()
for what, x in [("inputs of shape (2, 3, 16) with mean 10 and std 5", 10 + 5 * torch.randn(2, 3, 16)),
                ("inputs with a tiny variance (eps matters)", 3e-3 * torch.randn(4, 16)),
                ("rows whose features are all equal", torch.full((2, 16), 7.0))]:
    with forbid_reference_impl(), no_layer_norm:
        ln = LayerNorm(16)
        ln.load_state_dict(expected_module.state_dict())
        out = ln(x)
    expect_true(bool(torch.isfinite(out).all()), f"LayerNorm gives NaN or inf for {what}: "
                "add eps inside the square root, torch.sqrt(var + self.eps)")
    expect_close(out, expected_module(x), f"LayerNorm(16) on {what}", atol=1e-5,
                 hint="the biased variance, and eps inside the square root: torch.sqrt(var + self.eps)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): the GELU activation
#
# GPT-2's feed-forward layers use the GELU activation, in the tanh approximation that
# OpenAI trained with (section 4.3):
#
# $$\text{GELU}(x) \approx 0.5 \cdot x \cdot \left(1 + \tanh\left[\sqrt{2/\pi} \cdot \left(x + 0.044715 \cdot x^3\right)\right]\right)$$
#
# Write the `forward` method of `GELU` with this formula, element-wise, for a tensor of
# any shape (hint: `torch.tanh`, `torch.pi`, `math.sqrt` or `** 0.5`). Write it yourself:
# the checks do not accept `F.gelu` or `nn.GELU`. The exact GELU, $x \cdot \Phi(x)$ with the
# `erf` function, differs from this approximation by up to 5e-4: too much for the checks.

# %% nbgrader={"grade": false, "grade_id": "ex2_gelu_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class GELU(nn.Module):
    def forward(self, x):
        ### BEGIN SOLUTION
        return 0.5 * x * (1 + torch.tanh((2.0 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_gelu_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

no_gelu = mock.patch.object(F, "gelu", side_effect=CheckFailed(
    "write GELU's formula yourself instead of calling F.gelu or nn.GELU"))
x = torch.linspace(-3, 3, 100)
with forbid_reference_impl(), no_gelu:
    gelu = GELU()
    out = gelu(x)
expect_own_implementation(gelu, "your GELU")
expect_shape(out, (100,), "GELU()(torch.linspace(-3, 3, 100))", hint="GELU works element by element")
expect_close(out, reference.GELU()(x), "GELU()(torch.linspace(-3, 3, 100))",
             hint="0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))): the tanh approximation, not erf")
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
torch.manual_seed(123)
for what, x in [("random inputs of shape (3, 4, 5)", 4 * torch.randn(3, 4, 5)),
                ("large inputs", torch.tensor([-30.0, -10.0, -5.0, 0.0, 5.0, 10.0, 30.0]))]:
    with forbid_reference_impl(), no_gelu:
        out = GELU()(x)
    expect_close(out, reference.GELU()(x), f"GELU on {what}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (2 points): the feed-forward module
#
# Write the book's `FeedForward` module (section 4.3): a small network applied to each
# token on its own, which expands the token to 4 times its width, applies GELU and
# projects it back.
#
# * In `__init__`, store in `self.layers` an `nn.Sequential` of an `nn.Linear` from
#   `emb_dim` to `4 * emb_dim`, a GELU and an `nn.Linear` from `4 * emb_dim` back to
#   `emb_dim` (both with biases). `cfg` is the model's configuration, a `GPTConfig` as in
#   the chapter: its fields are attributes, `cfg.emb_dim`.
# * `forward(x)`: `x` of shape `(batch, num_tokens, emb_dim)` -> the same shape.
#
# For the GELU, use `nn.GELU(approximate="tanh")`, PyTorch's version of exercise 2, so that
# this exercise does not depend on your answer there.
# The checks copy fixed weights into your layers, so the names matter: `layers.0` and
# `layers.2` are the linear layers.

# %% nbgrader={"grade": false, "grade_id": "ex3_feed_forward_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ### BEGIN SOLUTION
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.layers(x)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_feed_forward_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

cfg = tiny_config()  # emb_dim 8
torch.manual_seed(123)
expected_module = reference.FeedForward(cfg)
with forbid_reference_impl():
    ff = FeedForward(cfg)
expect_own_implementation(ff, "your FeedForward")
expect_equal({name: tuple(p.shape) for name, p in ff.state_dict().items()},
             {name: tuple(p.shape) for name, p in expected_module.state_dict().items()},
             "the parameters of FeedForward (name: shape)",
             hint="self.layers = nn.Sequential(nn.Linear(emb_dim, 4 * emb_dim), GELU, nn.Linear(4 * emb_dim, emb_dim))")
x = torch.randn(2, 3, 8)
with forbid_reference_impl():
    ff.load_state_dict(expected_module.state_dict())
    out = ff(x)
expect_shape(out, (2, 3, 8), "FeedForward(cfg)(x)", hint="the output has the shape of the input")
expect_close(out, expected_module(x), "FeedForward(cfg)(x)",
             hint="Linear, then GELU in the tanh approximation (nn.GELU(approximate='tanh')), then Linear")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
cfg = tiny_config(emb_dim=16, n_heads=4)
torch.manual_seed(321)
expected_module = reference.FeedForward(cfg)
x = 3 * torch.randn(4, 5, 16)
with forbid_reference_impl():
    ff = FeedForward(cfg)
    ff.load_state_dict(expected_module.state_dict())
    out = ff(x)
expect_close(out, expected_module(x), "FeedForward with emb_dim=16 on inputs of shape (4, 5, 16)")
with forbid_reference_impl():
    n_parameters = sum(p.numel() for p in FeedForward(GPT_CONFIG_124M).parameters())
expect_equal(n_parameters, 4_722_432, "the number of parameters of FeedForward(GPT_CONFIG_124M)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): the transformer block
#
# Write the `forward` method of the book's `TransformerBlock` (section 4.5). Its
# `__init__` is given, with the course's versions of the parts: the multi-head attention
# of chapter 3 (`att`), the `FeedForward` (`ff`) and two `LayerNorm`s (`norm1`,
# `norm2`) of this chapter, and the dropout `drop_shortcut`. Call them; do not rewrite them.
#
# GPT-2 is a *pre-LayerNorm* transformer: each of its two sub-layers normalises its input,
# and its output (after dropout) is added back to the sub-layer's input, a **shortcut**
# connection that gives the gradients a direct path through the deep network:
#
# 1. `x = x + drop_shortcut(att(norm1(x)))`
# 2. `x = x + drop_shortcut(ff(norm2(x)))`
#
# The output has the shape of the input, `(batch, num_tokens, emb_dim)`.

# %% nbgrader={"grade": false, "grade_id": "ex4_transformer_block_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        # Given: the course's attention (chapter 3), feed-forward and layer norm.
        self.att = reference_impl.attention.MultiHeadAttention(
            d_in=cfg.emb_dim,
            d_out=cfg.emb_dim,
            context_length=cfg.context_length,
            num_heads=cfg.n_heads,
            dropout=cfg.drop_rate,
            qkv_bias=cfg.qkv_bias,
        )
        self.ff = reference_impl.model.FeedForward(cfg)
        self.norm1 = reference_impl.model.LayerNorm(cfg.emb_dim)
        self.norm2 = reference_impl.model.LayerNorm(cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x):
        ### BEGIN SOLUTION
        shortcut = x  # the attention sub-layer, with a shortcut around it
        x = self.drop_shortcut(self.att(self.norm1(x)))
        x = x + shortcut
        shortcut = x  # the feed-forward sub-layer, with a shortcut around it
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x + shortcut
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_transformer_block_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

given = (reference_impl.attention.MultiHeadAttention, reference.FeedForward, reference.LayerNorm, reference.GPTConfig)
cfg = tiny_config()  # emb_dim 8, 2 heads
torch.manual_seed(123)
block = TransformerBlock(cfg)
with torch.no_grad():  # random norm parameters: a missing or swapped norm shows
    for norm in (block.norm1, block.norm2):
        norm.scale.normal_()
        norm.shift.normal_()
x = torch.randn(2, 5, 8)
silent = copy.deepcopy(block)  # a block whose attention and feed-forward output zeros
with torch.no_grad():
    for layer in (silent.att.out_proj, silent.ff.layers[2]):
        layer.weight.zero_()
        layer.bias.zero_()
with forbid_reference_impl(allowed=given):
    out = block(x)
    out_silent = silent(x)
expect_shape(out, (2, 5, 8), "TransformerBlock(cfg)(x)", hint="a block keeps the shape of its input")
expect_close(out_silent, x, "the output of a block whose attention and feed-forward output zeros",
             hint="it must be the input itself: add each sub-layer's output to its input (the shortcut), "
                  "and normalise the sub-layer's input (pre-LN), not the sum")
expected_block = reference.TransformerBlock(cfg)
expected_block.load_state_dict(block.state_dict())
expect_close(out, expected_block(x), "TransformerBlock(cfg)(x)", atol=1e-5,
             hint="x = x + drop_shortcut(att(norm1(x))), then x = x + drop_shortcut(ff(norm2(x)))")
cfg = tiny_config(drop_rate=0.5)  # dropout on in training mode, off after .eval()
torch.manual_seed(123)
block = TransformerBlock(cfg)
expected_block = reference.TransformerBlock(cfg)
expected_block.load_state_dict(block.state_dict())
expected_block.att = copy.deepcopy(block.att)  # the same attention module: the same seed drops the same weights
with forbid_reference_impl(allowed=given):
    block.eval()
    out = block(x)
expect_close(out, expected_block.eval()(x), "TransformerBlock(tiny_config(drop_rate=0.5)).eval()(x)", atol=1e-5,
             hint="in eval mode dropout must be off: apply the module self.drop_shortcut, which .eval() turns off "
                  "(F.dropout(x, p) keeps dropping in eval mode unless you pass training=self.training)")
expected_block.train()
torch.manual_seed(1)
expected = expected_block(x)
with forbid_reference_impl(allowed=given):
    block.train()
    torch.manual_seed(1)
    out = block(x)
expect_close(out, expected, "TransformerBlock(tiny_config(drop_rate=0.5)) in training mode, after torch.manual_seed(1)",
             atol=1e-5, hint="apply self.drop_shortcut to each sub-layer's output, before adding it to the shortcut "
                             "(once after att, once after ff; not to the sum)")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for cfg in [tiny_config(emb_dim=16, n_heads=4, qkv_bias=True, drop_rate=0.5), tiny_config(context_length=4)]:
    torch.manual_seed(321)
    block = TransformerBlock(cfg).eval()  # eval: dropout off
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.scale.normal_()
            norm.shift.normal_()
    expected_block = reference.TransformerBlock(cfg).eval()
    expected_block.load_state_dict(block.state_dict())
    x = torch.randn(3, cfg.context_length, cfg.emb_dim)
    with forbid_reference_impl(allowed=given):
        out = block(x)
    expect_close(out, expected_block(x), f"TransformerBlock({cfg}).eval()(x)", atol=1e-5,
                 hint="use self.drop_shortcut (the module), so that .eval() turns dropout off")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (2 points): counting the parameters of a GPT
#
# How big is a GPT of a given configuration? Write `count_gpt_parameters(cfg)`, which
# returns the number of parameters (a Python `int`) of the book's `GPTModel` built from
# the configuration `cfg` (a `GPTConfig`), **by formula**, without building a model. With
# `d = emb_dim`, `V = vocab_size`, `C = context_length`:
#
# * token embedding `V x d` and position embedding `C x d`;
# * per transformer block (`n_layers` of them):
#   * attention: `W_query`, `W_key`, `W_value`, each `d x d` (plus a bias of `d` each if
#     `cfg.qkv_bias`), and `out_proj`, `d x d` plus a bias of `d`;
#   * feed-forward: `d x 4d` plus a bias of `4d`, then `4d x d` plus a bias of `d`;
#   * two layer norms, each with a `scale` and a `shift` of `d`;
# * the final layer norm (`scale` and `shift`) and the output head, `d x V` without bias
#   (not shared with the token embedding).
#
# `count_gpt_parameters(GPT_CONFIG_124M)` is `163_009_536`: the "124M" of GPT-2 counts the
# output head as the token embedding, shared (weight tying), and
# `163_009_536 - 50257 * 768 = 124_412_160`.

# %% nbgrader={"grade": false, "grade_id": "ex5_count_parameters_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def count_gpt_parameters(cfg):
    ### BEGIN SOLUTION
    d, vocab, context, n_layers = cfg.emb_dim, cfg.vocab_size, cfg.context_length, cfg.n_layers
    embeddings = vocab * d + context * d
    attention = 3 * d * d + (3 * d if cfg.qkv_bias else 0) + d * d + d
    feed_forward = d * 4 * d + 4 * d + 4 * d * d + d
    layer_norms = 2 * 2 * d
    per_block = attention + feed_forward + layer_norms
    return embeddings + n_layers * per_block + 2 * d + d * vocab
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_count_parameters_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

hint = ("embeddings V*d + C*d; per block: W_query/W_key/W_value 3*d*d (+3*d with qkv_bias), out_proj d*d + d, "
        "feed-forward d*4d + 4d + 4d*d + d, two layer norms 2*2*d; then the final norm 2*d and the head d*V")
with forbid_reference_impl():
    n_parameters = count_gpt_parameters(GPT_CONFIG_124M)
expect_equal(n_parameters, 163_009_536, "count_gpt_parameters(GPT_CONFIG_124M)", hint=hint)
cfg = tiny_config(vocab_size=11, context_length=5, emb_dim=6, n_heads=3, n_layers=2)
with forbid_reference_impl():
    n_parameters = count_gpt_parameters(cfg)
expect_equal(n_parameters, reference.count_parameters(reference.GPTModel(cfg)), f"count_gpt_parameters({cfg})",
             hint=hint)
print("Exercise 5: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
configs = [GPT_CONFIG_124M.replace(qkv_bias=True),
           GPT_CONFIG_124M.replace(emb_dim=1024, n_layers=24, n_heads=16),  # gpt2-medium (355M)
           GPT_CONFIG_124M.replace(emb_dim=1280, n_layers=36, n_heads=20),  # gpt2-large (774M)
           GPT_CONFIG_124M.replace(emb_dim=1600, n_layers=48, n_heads=25),  # gpt2-xl (1558M)
           tiny_config(vocab_size=7, context_length=3, emb_dim=4, n_heads=1, n_layers=5, qkv_bias=True)]
for cfg in configs:
    with torch.device("meta"):  # parameters without memory: a big model costs nothing
        expected = reference.count_parameters(reference.GPTModel(cfg))
    with forbid_reference_impl():
        n_parameters = count_gpt_parameters(cfg)
    expect_equal(n_parameters, expected, f"count_gpt_parameters({cfg})", hint=hint)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (3 points): the GPT model
#
# Write the `forward` method of the book's `GPTModel` (section 4.6). Its `__init__` is
# given, with the course's `TransformerBlock` and `LayerNorm`. For token ids `in_idx` of
# shape `(batch, num_tokens)`:
#
# 1. the token embeddings `tok_emb(in_idx)` plus the position embeddings of the positions
#    `0, 1, ..., num_tokens - 1` (`torch.arange(num_tokens, device=in_idx.device)`), then
#    the dropout `drop_emb`;
# 2. the transformer blocks, `trf_blocks` (an `nn.Sequential`: one call runs them all);
# 3. the final layer norm, `final_norm`;
# 4. the output head, `out_head`: one logit per vocabulary entry for each token.
#
# Return the logits, of shape `(batch, num_tokens, vocab_size)`.

# %% nbgrader={"grade": false, "grade_id": "ex6_gpt_model_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class GPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        # Given: the course's TransformerBlock and LayerNorm.
        self.trf_blocks = nn.Sequential(
            *[reference_impl.model.TransformerBlock(cfg) for _ in range(cfg.n_layers)]
        )
        self.final_norm = reference_impl.model.LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    def forward(self, in_idx):
        ### BEGIN SOLUTION
        batch_size, num_tokens = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(num_tokens, device=in_idx.device))
        x = self.drop_emb(tok_embeds + pos_embeds)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_gpt_model_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

given = (reference.TransformerBlock, reference.LayerNorm)
cfg = tiny_config(vocab_size=60, emb_dim=16, n_heads=2, n_layers=2)  # context_length 8
torch.manual_seed(123)
model = GPTModel(cfg)
with torch.no_grad():  # random final norm parameters: forgetting final_norm shows
    model.final_norm.scale.normal_()
    model.final_norm.shift.normal_()
expected_model = reference.GPTModel(cfg)
expected_model.load_state_dict(model.state_dict())
in_idx = torch.tensor([[6, 1, 59, 3, 0], [2, 2, 2, 2, 2]])
with forbid_reference_impl(allowed=given):
    logits = model(in_idx)
expect_shape(logits, (2, 5, 60), "GPTModel(cfg)(in_idx) for 2 sequences of 5 tokens",
             hint="(batch, num_tokens, vocab_size): finish with out_head")


def without(model, **changes):
    """A copy of ``model`` with some parts replaced: the output of a known mistake."""
    changed = copy.deepcopy(model)
    for name, part in changes.items():
        setattr(changed, name, part)
    return changed


def expect_gpt_logits(logits, expected_model, in_idx, what, seed=None):
    """Compare with the reference model; on a difference, name the step that is missing."""
    zero_positions = nn.Embedding(*expected_model.pos_emb.weight.shape)
    nn.init.zeros_(zero_positions.weight)
    mistakes = [("the final layer norm is missing: apply self.final_norm after the blocks, before out_head",
                 without(expected_model, final_norm=nn.Identity())),
                ("the position embeddings are missing: add self.pos_emb(torch.arange(num_tokens, "
                 "device=in_idx.device)) to the token embeddings", without(expected_model, pos_emb=zero_positions)),
                ("the dropout of the embeddings is missing: apply self.drop_emb to tok_emb(...) + pos_emb(...) "
                 "before the blocks", without(expected_model, drop_emb=nn.Identity())),
                ("the transformer blocks are missing: run x through self.trf_blocks",
                 without(expected_model, trf_blocks=nn.Sequential()))]
    outputs = []
    for explanation, model in mistakes + [(None, expected_model)]:
        if seed is not None:
            torch.manual_seed(seed)
        outputs.append((model(in_idx), explanation))
    mistake = known_mistake(logits, outputs[-1][0], outputs[:-1])
    expect_true(mistake is None, f"{what}: {mistake}")
    expect_close(logits, outputs[-1][0], what,
                 hint="tok_emb(in_idx) + pos_emb(torch.arange(num_tokens)), drop_emb, trf_blocks, final_norm, out_head")


expect_gpt_logits(logits, expected_model, in_idx, "the logits of GPTModel(cfg)(in_idx)")
cfg = cfg.replace(drop_rate=0.5)  # dropout on, in training mode: the same seed drops the same values
torch.manual_seed(123)
model = GPTModel(cfg)
expected_model = reference.GPTModel(cfg)
expected_model.load_state_dict(model.state_dict())
with forbid_reference_impl(allowed=given):
    torch.manual_seed(1)
    logits = model(in_idx)
expect_gpt_logits(logits, expected_model, in_idx, "the logits of GPTModel(tiny_config(drop_rate=0.5)) in "
                  "training mode, after torch.manual_seed(1)", seed=1)
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for cfg, in_idx in [(tiny_config(vocab_size=60, emb_dim=16, n_heads=4, n_layers=3, drop_rate=0.1, qkv_bias=True),
                     torch.randint(0, 60, (3, 8), generator=torch.Generator().manual_seed(1))),  # the whole context
                    (tiny_config(), torch.tensor([[7], [49]]))]:  # one token
    torch.manual_seed(321)
    model = GPTModel(cfg).eval()  # eval: dropout off
    expected_model = reference.GPTModel(cfg).eval()
    expected_model.load_state_dict(model.state_dict())
    with forbid_reference_impl(allowed=given):
        logits = model(in_idx)
    expect_close(logits, expected_model(in_idx), f"the logits of GPTModel({cfg}).eval() for in_idx of shape "
                 f"{tuple(in_idx.shape)}", hint="use the module self.drop_emb, so that .eval() turns it off")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (3 points): generating text, greedily
#
# Write the book's `generate_text_simple(model, idx, max_new_tokens, context_size)`
# (section 4.7), which extends a batch of token ids `idx` of shape `(batch, num_tokens)`
# by `max_new_tokens` tokens, one at a time. At each step:
#
# 1. crop the sequence to its last `context_size` tokens (the model cannot read more:
#    `idx[:, -context_size:]`);
# 2. run the model (under `torch.no_grad()`: no training here) and keep the logits of the
#    **last** position only, shape `(batch, vocab_size)`;
# 3. pick the most likely next token, `torch.argmax(..., dim=-1, keepdim=True)` (greedy
#    decoding; the softmax of the book does not change which token is largest);
# 4. append it to `idx` with `torch.cat(..., dim=1)`.
#
# Return the whole sequence: the prompt followed by the new tokens, shape
# `(batch, num_tokens + max_new_tokens)`.
#
# The checks call your function with the course's `GPTModel` (random weights, tiny):
# call `model(...)`, nothing else from `reference_impl`.

# %% nbgrader={"grade": false, "grade_id": "ex7_generate_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def generate_text_simple(model, idx, max_new_tokens, context_size):
    ### BEGIN SOLUTION
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # the model sees at most context_size tokens
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]  # only the last position predicts the next token
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_generate_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import generate as reference_generate
from reference_impl import model as reference

torch.manual_seed(123)
model = reference.GPTModel(tiny_config(vocab_size=50, context_length=16, emb_dim=16, n_layers=2)).eval()
prompt = torch.tensor([[7, 3, 11, 2, 40], [1, 1, 1, 1, 1]])
with forbid_reference_impl(allowed=(reference.GPTModel,)):
    out = generate_text_simple(model, prompt, max_new_tokens=6, context_size=4)
expect_shape(out, (2, 11), "generate_text_simple(model, prompt, max_new_tokens=6, context_size=4) for a (2, 5) prompt",
             hint="return the prompt followed by the max_new_tokens new tokens")
expect_equal(out[:, :5], prompt, "the first 5 tokens of the output",
             hint="return the whole sequence: the prompt, then each new token appended with torch.cat(..., dim=1)")
expected = reference_generate.generate_text_simple(model, prompt, max_new_tokens=6, context_size=4)
expect_equal(out, expected, "generate_text_simple(model, prompt, max_new_tokens=6, context_size=4)",
             hint="at each step, crop to the last context_size tokens (idx[:, -context_size:]) and take "
                  "the argmax of the last position's logits (logits[:, -1, :])")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(7)
for prompt, max_new_tokens, context_size in [
    (torch.randint(0, 50, (3, 6), generator=generator), 14, 16),  # grows past the model's context length 16
    (torch.randint(0, 50, (2, 20), generator=generator), 3, 16),  # a prompt longer than the context
    (torch.tensor([[42]]), 5, 3),  # a one-token prompt
    (torch.tensor([[3, 4, 5]]), 0, 16),  # nothing to generate
]:
    with forbid_reference_impl(allowed=(reference.GPTModel,)):
        out = generate_text_simple(model, prompt.clone(), max_new_tokens=max_new_tokens, context_size=context_size)
    expected = reference_generate.generate_text_simple(model, prompt, max_new_tokens, context_size)
    expect_equal(out, expected, f"generate_text_simple for a prompt of shape {tuple(prompt.shape)}, "
                 f"max_new_tokens={max_new_tokens}, context_size={context_size}",
                 hint="crop the input to its last context_size tokens at every step")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (1 point): attention or feed-forward: where are the parameters?
#
# The book's exercise 4.1: compare the number of parameters of the feed-forward module and of
# the multi-head attention module of one transformer block. Write
# `count_sublayer_parameters(block)`, which takes a transformer block (the course's
# `TransformerBlock`, with its attention in `block.att` and its feed-forward module in
# `block.ff`) and returns the pair of `int`s `(attention_parameters, feed_forward_parameters)`:
# the number of values in the parameters of each (`p.numel()` summed over `.parameters()`).
#
# For a block of GPT-2 small (`GPT_CONFIG_124M`) the answer is `(2360064, 4722432)`: the
# feed-forward module holds twice as many parameters as the attention module.

# %% nbgrader={"grade": false, "grade_id": "ex8_sublayer_parameters_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def count_sublayer_parameters(block):
    ### BEGIN SOLUTION
    attention = sum(p.numel() for p in block.att.parameters())
    feed_forward = sum(p.numel() for p in block.ff.parameters())
    return attention, feed_forward
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_sublayer_parameters_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference

block = reference.TransformerBlock(GPT_CONFIG_124M)
with forbid_reference_impl():
    counts = count_sublayer_parameters(block)
expect_type(counts, (tuple, list), "count_sublayer_parameters(block)")
expect_equal(len(counts), 2, "the number of results of count_sublayer_parameters(block)",
             hint="return the pair (attention_parameters, feed_forward_parameters)")
expect_type(counts[0], int, "attention_parameters")
expect_equal(counts[0], 2_360_064, "the attention parameters of a GPT-2 small block",
             hint="sum p.numel() over block.att.parameters(): W_query, W_key, W_value and out_proj with its bias")
expect_equal(counts[1], 4_722_432, "the feed-forward parameters of a GPT-2 small block",
             hint="sum p.numel() over block.ff.parameters(): two linear layers with their biases")
print("Exercise 8: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for cfg in [tiny_config(qkv_bias=True), tiny_config(emb_dim=12, n_heads=3), tiny_config(emb_dim=64, n_heads=4)]:
    block = reference.TransformerBlock(cfg)
    with forbid_reference_impl():
        counts = count_sublayer_parameters(block)
    expected = (reference.count_parameters(block.att), reference.count_parameters(block.ff))
    expect_equal(tuple(counts), expected, f"count_sublayer_parameters of a block of {cfg}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 9 (2 points): a dropout rate for each place
#
# The book's exercise 4.3: the GPT model uses one dropout rate, `cfg.drop_rate`, in three
# places: after the embeddings (`model.drop_emb`), on the attention weights (each block's
# `att`) and on the shortcut connections (each block's `drop_shortcut`). Write
# `set_dropout_rates(model, drop_rate_emb, drop_rate_attn, drop_rate_shortcut)`, which gives
# each place its own rate in an existing course `GPTModel` (`reference_impl.model.GPTModel`):
#
# * set the probability `p` of the `nn.Dropout` `model.drop_emb` to `drop_rate_emb`, and in
#   every block of `model.trf_blocks`, that of `block.drop_shortcut` to `drop_rate_shortcut`
#   (an `nn.Dropout` reads its `p` at each call, so changing it is enough; the weights stay as
#   they are);
# * the course's blocks use the fused attention of chapter 3 (`FusedMultiHeadAttention`),
#   which passes its rate to `F.scaled_dot_product_attention`: it keeps it as a plain float in
#   `block.att.dropout`. Set that float to `drop_rate_attn` in every block;
# * check each rate: a rate outside `[0, 1)` raises `ValueError` with a message that names it
#   (e.g. `"drop_rate_attn must be in [0, 1), got 1.5"`), before any rate is changed;
# * return `model` (the same object).

# %% nbgrader={"grade": false, "grade_id": "ex9_dropout_rates_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def set_dropout_rates(model, drop_rate_emb, drop_rate_attn, drop_rate_shortcut):
    ### BEGIN SOLUTION
    rates = {"drop_rate_emb": drop_rate_emb, "drop_rate_attn": drop_rate_attn, "drop_rate_shortcut": drop_rate_shortcut}
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
    model.drop_emb.p = drop_rate_emb
    for block in model.trf_blocks:
        block.att.dropout = drop_rate_attn  # a float: the fused attention's dropout_p
        block.drop_shortcut.p = drop_rate_shortcut
    return model
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex9_dropout_rates_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 9: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import model as reference


def dropout_rates(model):
    """(emb, [attention rates], [shortcut rates]) of a course GPTModel."""
    return (model.drop_emb.p, [block.att.dropout for block in model.trf_blocks],
            [block.drop_shortcut.p for block in model.trf_blocks])


torch.manual_seed(123)
model = reference.GPTModel(tiny_config(n_layers=2, drop_rate=0.1))
weights = copy.deepcopy(model.state_dict())
with forbid_reference_impl():
    returned = set_dropout_rates(model, 0.2, 0.3, 0.4)
expect_true(returned is model, "set_dropout_rates should return the model it was given (the same object)")
emb, attn, shortcut = dropout_rates(model)
expect_true(emb == 0.2, f"model.drop_emb.p is {emb}, expected drop_rate_emb = 0.2")
expect_equal(attn, [0.3, 0.3], "the rates of the attention dropouts, block.att.dropout of each block",
             hint="set the float block.att.dropout in every block of model.trf_blocks to drop_rate_attn")
expect_equal(shortcut, [0.4, 0.4], "the rates of the shortcut dropouts, block.drop_shortcut.p of each block",
             hint="set it in every block of model.trf_blocks to drop_rate_shortcut")
expect_true(all(torch.equal(weights[name], value) for name, value in model.state_dict().items()),
            "set_dropout_rates changed the model's weights: change only the dropout rates")
for bad in [(1.5, 0.1, 0.1, "drop_rate_emb"), (0.1, 1.0, 0.1, "drop_rate_attn"), (0.1, 0.1, -0.1, "drop_rate_shortcut")]:
    try:
        with forbid_reference_impl():
            set_dropout_rates(model, *bad[:3])
    except ValueError as error:
        expect_true(bad[3] in str(error), f"set_dropout_rates(model, {bad[0]}, {bad[1]}, {bad[2]}) raised "
                    f"ValueError({str(error)!r}): the message should name the bad rate, {bad[3]}")
    else:
        raise CheckFailed(f"set_dropout_rates(model, {bad[0]}, {bad[1]}, {bad[2]}) should raise ValueError: "
                          f"{bad[3]} is outside [0, 1)")
    expect_equal(list(dropout_rates(model)), [0.2, [0.3, 0.3], [0.4, 0.4]],
                 f"the rates after the bad call set_dropout_rates(model, {bad[0]}, {bad[1]}, {bad[2]})",
                 hint="check every rate before changing any")
print("Exercise 9: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
torch.manual_seed(321)
model = reference.GPTModel(tiny_config(n_layers=3, drop_rate=0.0))
with forbid_reference_impl():
    set_dropout_rates(model, 0.0, 0.5, 0.25)
expect_equal(list(dropout_rates(model)), [0.0, [0.5] * 3, [0.25] * 3], "the rates of a model with 3 blocks")
# In training mode, the model now drops like a model whose every dropout has its own rate.
expected_model = copy.deepcopy(model)
expected_model.drop_emb = nn.Dropout(0.0)
for block in expected_model.trf_blocks:
    block.att.dropout = 0.5
    block.drop_shortcut = nn.Dropout(0.25)
idx = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
torch.manual_seed(1)
expected = expected_model(idx)
torch.manual_seed(1)
expect_close(model(idx), expected, "the logits in training mode after set_dropout_rates(model, 0.0, 0.5, 0.25)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 10 (2 points): the network of appendix A and its parameters
#
# Appendix A trains a small multilayer perceptron. Write it, and the function that counts its
# trainable parameters (the book's exercise A.3):
#
# * `NeuralNetwork(num_inputs, num_outputs)`: an `nn.Module` whose `self.layers` is an
#   `nn.Sequential` of `nn.Linear(num_inputs, 30)`, `nn.ReLU()`, `nn.Linear(30, 20)`,
#   `nn.ReLU()`, `nn.Linear(20, num_outputs)` (all with biases); `forward(x)` returns
#   `self.layers(x)`, the logits (no softmax);
# * `count_trainable_parameters(model)`: the number of values (an `int`) in the parameters of
#   any module that have `requires_grad=True` (a frozen parameter does not count).
#
# How many trainable parameters has `NeuralNetwork(50, 3)`? Work it out by hand first: each
# `nn.Linear(a, b)` has `a * b` weights and `b` biases.

# %% nbgrader={"grade": false, "grade_id": "ex10_appendix_network_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class NeuralNetwork(nn.Module):
    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        ### BEGIN SOLUTION
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30),  # the first hidden layer
            nn.ReLU(),
            nn.Linear(30, 20),  # the second hidden layer
            nn.ReLU(),
            nn.Linear(20, num_outputs),  # the output layer
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.layers(x)
        ### END SOLUTION


def count_trainable_parameters(model):
    ### BEGIN SOLUTION
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex10_appendix_network_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 10: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
def appendix_network(num_inputs, num_outputs):
    """Appendix A's network as one nn.Sequential, to compare with."""
    return nn.Sequential(nn.Linear(num_inputs, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(),
                         nn.Linear(20, num_outputs))


torch.manual_seed(123)
expected_layers = appendix_network(50, 3)
with forbid_reference_impl():
    network = NeuralNetwork(50, 3)
expect_equal({name: tuple(p.shape) for name, p in network.state_dict().items()},
             {f"layers.{name}": tuple(p.shape) for name, p in expected_layers.state_dict().items()},
             "the parameters of NeuralNetwork(50, 3) (name: shape)",
             hint="self.layers = nn.Sequential(nn.Linear(num_inputs, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), "
                  "nn.Linear(20, num_outputs))")
x = torch.randn(4, 50)
with forbid_reference_impl():
    network.load_state_dict({f"layers.{name}": p for name, p in expected_layers.state_dict().items()})
    logits = network(x)
expect_close(logits, expected_layers(x), "NeuralNetwork(50, 3)(x) for x of shape (4, 50)",
             hint="return the logits self.layers(x): ReLU between the layers, no softmax at the end")
with forbid_reference_impl():
    n_trainable = count_trainable_parameters(network)
expect_type(n_trainable, int, "count_trainable_parameters(NeuralNetwork(50, 3))")
expect_equal(n_trainable, 2213, "count_trainable_parameters(NeuralNetwork(50, 3))",
             hint="sum p.numel() over model.parameters(): 50*30 + 30 + 30*20 + 20 + 20*3 + 3")
network.layers[0].requires_grad_(False)  # freeze the first layer: 1,530 parameters
with forbid_reference_impl():
    n_trainable = count_trainable_parameters(network)
expect_equal(n_trainable, 2213 - 1530, "count_trainable_parameters after freezing the first layer",
             hint="count only the parameters with p.requires_grad")
print("Exercise 10: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for num_inputs, num_outputs in [(2, 2), (784, 10)]:
    with forbid_reference_impl():
        n_trainable = count_trainable_parameters(NeuralNetwork(num_inputs, num_outputs))
    expected = sum(p.numel() for p in appendix_network(num_inputs, num_outputs).parameters())
    expect_equal(n_trainable, expected, f"count_trainable_parameters(NeuralNetwork({num_inputs}, {num_outputs}))")
torch.manual_seed(321)
model = reference_impl.model.GPTModel(tiny_config(n_layers=2))
for p in model.trf_blocks[0].parameters():
    p.requires_grad_(False)
with forbid_reference_impl():
    n_trainable = count_trainable_parameters(model)
expect_equal(n_trainable, reference_impl.model.count_parameters(model, trainable_only=True),
             "count_trainable_parameters of a tiny GPT with its first block frozen")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 11 (1 point): predict before you run
#
# Answer three questions about this chapter's model: in the function `predictions()` below,
# replace each `None` by your answer (and delete the `raise NotImplementedError()` line).
# Think first, then check your answers with a few lines of code if you like. The visible
# checks only check the kind of each answer; grading checks the values.
#
# 1. `answer_logits_shape` (a tuple of 3 `int`s): the shape of `GPTModel(GPT_CONFIG_124M)(batch)`
#    for a batch of 2 texts of 4 token ids each.
# 2. `answer_out_head_parameters` (an `int`): the number of parameters of the output head of
#    that model (an `nn.Linear` without bias, not shared with the token embedding).
# 3. `answer_layer_norm_axis` (one of `"a"`, `"b"`, `"c"`): over which values does a GPT's
#    `LayerNorm` compute each mean and variance?
#    * `"a"`: over the batch: the same feature of every sequence of the batch;
#    * `"b"`: over the tokens: the same feature of every token of a sequence;
#    * `"c"`: over the features: the `emb_dim` values of one token.

# %% nbgrader={"grade": false, "grade_id": "ex11_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def predictions():
    answer_logits_shape = None  # a tuple of 3 ints
    answer_out_head_parameters = None  # an int
    answer_layer_norm_axis = None  # "a", "b" or "c"
    ### BEGIN SOLUTION
    answer_logits_shape = (2, 4, 50257)  # (batch, num_tokens, vocab_size): a logit per vocabulary entry and token
    answer_out_head_parameters = 768 * 50257  # 38,597,376
    answer_layer_norm_axis = "c"  # dim=-1: each token is normalised on its own
    ### END SOLUTION
    return answer_logits_shape, answer_out_head_parameters, answer_layer_norm_axis

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex11_predictions_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 11: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    answer_logits_shape, answer_out_head_parameters, answer_layer_norm_axis = predictions()
expect_type(answer_logits_shape, (tuple, list, torch.Size), "answer_logits_shape")
expect_true(len(answer_logits_shape) == 3 and all(isinstance(n, int) for n in answer_logits_shape),
            f"answer_logits_shape is {answer_logits_shape!r}: write a shape as a tuple of 3 ints, (a, b, c)")
expect_type(answer_out_head_parameters, int, "answer_out_head_parameters")
expect_true(answer_out_head_parameters > 0,
            f"answer_out_head_parameters is {answer_out_head_parameters}: count the weights of the head")
expect_true(answer_layer_norm_axis in ("a", "b", "c"),
            f"answer_layer_norm_axis is {answer_layer_norm_axis!r}: set it to one of the strings 'a', 'b' or 'c'")
print("Exercise 11: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
expect_equal(tuple(answer_logits_shape), (2, 4, GPT_CONFIG_124M.vocab_size), "answer_logits_shape")
expect_equal(answer_out_head_parameters, GPT_CONFIG_124M.emb_dim * GPT_CONFIG_124M.vocab_size,
             "answer_out_head_parameters")
expect_equal(answer_layer_norm_axis, "c", "answer_layer_norm_axis")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
