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
# # Chapter 3 exercises: coding attention mechanisms
#
# These exercises make you write the code of chapter 3 yourself: from the dot products of a
# single query to multi-head causal attention, and the KV cache that makes generation fast.
# Exercise 8 is the book's exercise 3.2 (stacked heads with two-dimensional outputs); the last
# one asks you to predict a few results before you run them.
# All checks use the book's six-token example or small random inputs: each runs in well under
# a second.
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
# | 1. Attention scores of one query | 1 |
# | 2. Attention weights and context vectors of all tokens | 1 |
# | 3. Self-attention with trainable weights | 2 |
# | 4. The causal mask | 2 |
# | 5. Split into heads and merge them back | 2 |
# | 6. Multi-head attention | 3 |
# | 7. Attention with a KV cache | 3 |
# | 8. Stacked heads with two-dimensional outputs | 2 |
# | 9. Predict before you run | 1 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

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

show_warnings_on_stdout()
torch.set_printoptions(precision=4, sci_mode=False)


def book_inputs():
    """The book's running example (section 3.3): "Your journey starts with one step",
    six tokens embedded as 3-dimensional vectors. A new tensor at each call."""
    return torch.tensor(
        [[0.43, 0.15, 0.89],  # Your     (x^1)
         [0.55, 0.87, 0.66],  # journey  (x^2)
         [0.57, 0.85, 0.64],  # starts   (x^3)
         [0.22, 0.58, 0.33],  # with     (x^4)
         [0.77, 0.25, 0.10],  # one      (x^5)
         [0.05, 0.80, 0.55]]  # step     (x^6)
    )


inputs = book_inputs()
print(f"inputs: {tuple(inputs.shape)} (num_tokens, embedding dimension)")


# %% [markdown]
# ## Exercise 1 (1 point): attention scores of one query
#
# Simplified self-attention starts by asking how much each token relates to one token,
# the *query* (section 3.3.1). Write `attention_scores(inputs, query)`:
#
# * `inputs` has shape `(num_tokens, d)`, `query` has shape `(d,)`;
# * score `i` is the dot product of `inputs[i]` and `query`;
# * return a tensor of shape `(num_tokens,)`.
#
# For the book's query "journey", `attention_scores(inputs, inputs[1])` is
# `tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])`.
#
# Hint: `torch.dot(a, b)` is a dot product. A loop over the rows works; a single
# matrix-vector product computes all the scores at once.

# %% nbgrader={"grade": false, "grade_id": "ex1_scores_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attention_scores(inputs, query):
    ### BEGIN SOLUTION
    return inputs @ query  # one dot product per row of inputs
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_scores_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
x = book_inputs()
with forbid_reference_impl():
    scores = attention_scores(x, x[1])
expect_shape(scores, (6,), "attention_scores(inputs, inputs[1])", hint="one score per token of inputs")
expect_close(scores, torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]),
             "attention_scores(inputs, inputs[1])", atol=1e-4,
             hint="score i is the dot product of inputs[i] and the query")
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(123)
x = torch.randn(7, 5, generator=generator)
query = torch.randn(5, generator=generator)
with forbid_reference_impl():
    scores = attention_scores(x, query)
expect_close(scores, torch.stack([torch.dot(row, query) for row in x]),
             "attention_scores of 7 random 5-dimensional tokens")
with forbid_reference_impl():
    scores = attention_scores(book_inputs(), book_inputs()[4])
expect_close(scores, torch.stack([torch.dot(row, book_inputs()[4]) for row in book_inputs()]),
             "attention_scores(inputs, inputs[4])")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): attention weights and context vectors of all tokens
#
# Now compute the attention of every token at once, with matrix products and no loop
# (section 3.3.2). Write `simple_self_attention(inputs)` that returns the pair
# `(attn_weights, context_vecs)` (a tuple or a list of the two tensors):
#
# * `attn_scores[i, j]` is the dot product of token `i` (the query) and token `j`:
#   shape `(num_tokens, num_tokens)`;
# * `attn_weights` normalises each row of the scores with a softmax, so that each row
#   sums to 1;
# * `context_vecs[i]` is the sum of all tokens weighted by row `i` of the weights:
#   shape `(num_tokens, d)`.
#
# For the book's inputs, row 1 ("journey") of the weights is
# `[0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581]` and its context vector is
# `[0.4419, 0.6515, 0.5683]`.
#
# Hint: `inputs @ inputs.T`, then `torch.softmax(..., dim=-1)`, then one more `@`.

# %% nbgrader={"grade": false, "grade_id": "ex2_simple_attention_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def simple_self_attention(inputs):
    ### BEGIN SOLUTION
    attn_scores = inputs @ inputs.T
    attn_weights = torch.softmax(attn_scores, dim=-1)  # each row (one query) sums to 1
    context_vecs = attn_weights @ inputs
    return attn_weights, context_vecs
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_simple_attention_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    result = simple_self_attention(book_inputs())
expect_type(result, (tuple, list), "simple_self_attention(inputs)")
expect_equal(len(result), 2, "the number of results of simple_self_attention(inputs)",
             hint="return the pair (attn_weights, context_vecs)")
attn_weights, context_vecs = result
expect_shape(attn_weights, (6, 6), "attn_weights", hint="one row per query, one column per token")
expect_close(attn_weights.sum(dim=-1), torch.ones(6), "the sum of each row of attn_weights",
             hint="normalise each row with torch.softmax(attn_scores, dim=-1)")
expect_close(attn_weights[1], torch.tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581]),
             "attn_weights[1] (the query 'journey')", atol=1e-4,
             hint="the scores are the dot products of every pair of tokens: inputs @ inputs.T")
expect_shape(context_vecs, (6, 3), "context_vecs", hint="one context vector per token, as wide as the inputs")
expect_close(context_vecs[1], torch.tensor([0.4419, 0.6515, 0.5683]), "context_vecs[1]", atol=1e-4,
             hint="context vector i is the sum of the inputs weighted by row i: attn_weights @ inputs")
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
def expected_attention(x):
    weights = torch.softmax(x @ x.T, dim=-1)
    return weights, weights @ x

for x in [book_inputs(), torch.randn(7, 5, generator=torch.Generator().manual_seed(123))]:
    with forbid_reference_impl():
        attn_weights, context_vecs = simple_self_attention(x)
    weights, contexts = expected_attention(x)
    expect_close(attn_weights, weights, f"attn_weights for inputs of shape {tuple(x.shape)}")
    expect_close(context_vecs, contexts, f"context_vecs for inputs of shape {tuple(x.shape)}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (2 points): self-attention with trainable weights
#
# Write the `forward` method of the book's `SelfAttention_v2` (section 3.4.2): the layers
# `W_query`, `W_key` and `W_value` (`nn.Linear`, given) project the inputs `x` of shape
# `(num_tokens, d_in)` to queries, keys and values of shape `(num_tokens, d_out)`; then
#
# * `attn_scores = queries @ keys.T`;
# * `attn_weights` is the softmax of the scores **divided by** $\sqrt{d_k}$, the square root of
#   the keys' dimension (`keys.shape[-1] ** 0.5`): without the scaling, large dot products
#   push the softmax to one-hot weights with tiny gradients;
# * return the context vectors `attn_weights @ values`, shape `(num_tokens, d_out)`.
#
# The checks copy fixed weights into your layers with `load_state_dict`. With
# `torch.manual_seed(789)` before `SelfAttention_v2(3, 2)`, the first context vector of the
# book's inputs is `[-0.0739, 0.0713]`.

# %% nbgrader={"grade": false, "grade_id": "ex3_self_attention_v2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class SelfAttention_v2(nn.Module):
    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):
        ### BEGIN SOLUTION
        queries = self.W_query(x)
        keys = self.W_key(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.T
        # Scaling by sqrt(d_k) keeps the softmax out of its flat, saturated regions.
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_self_attention_v2_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

torch.manual_seed(789)
expected_module = reference.SelfAttention_v2(3, 2)
with forbid_reference_impl():
    sa_v2 = SelfAttention_v2(3, 2)
    sa_v2.load_state_dict(expected_module.state_dict())
    context_vecs = sa_v2(book_inputs())
expect_own_implementation(sa_v2, "your SelfAttention_v2")
expect_shape(context_vecs, (6, 2), "SelfAttention_v2(3, 2)(inputs)",
             hint="one d_out-dimensional context vector per token: attn_weights @ values")
expect_close(context_vecs[0], torch.tensor([-0.0739, 0.0713]), "the first context vector", atol=1e-4,
             hint="did you divide the scores by sqrt(d_k) = keys.shape[-1] ** 0.5 before the softmax over dim=-1?")
expect_close(context_vecs, expected_module(book_inputs()), "SelfAttention_v2(3, 2)(inputs)",
             hint="did you divide the scores by sqrt(d_k) = keys.shape[-1] ** 0.5 and take the softmax "
                  "over dim=-1 (one row per query), then multiply by the values?")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for d_in, d_out, qkv_bias, num_tokens in [(5, 16, True, 8), (4, 4, False, 1)]:
    torch.manual_seed(123)
    expected_module = reference.SelfAttention_v2(d_in, d_out, qkv_bias=qkv_bias)
    x = torch.randn(num_tokens, d_in) * 2
    with forbid_reference_impl():
        sa_v2 = SelfAttention_v2(d_in, d_out, qkv_bias=qkv_bias)
        sa_v2.load_state_dict(expected_module.state_dict())
        context_vecs = sa_v2(x)
    expect_close(context_vecs, expected_module(x),
                 f"SelfAttention_v2({d_in}, {d_out}, qkv_bias={qkv_bias}) on {num_tokens} tokens",
                 hint="scale by sqrt(d_k) = keys.shape[-1] ** 0.5 (the keys' dimension, d_out)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): the causal mask
#
# A GPT predicts the next token, so a token may only attend to itself and the tokens
# before it (section 3.5). Write two functions that hide the future:
#
# 1. `causal_attention_weights(attn_scores)`: `attn_scores` has shape `(..., num_tokens, num_tokens)`
#    (any number of leading dimensions, e.g. batch and heads) and is already scaled. Set
#    every score above the diagonal (a key that comes after its query) to `-torch.inf`,
#    then apply the softmax over the last dimension. Since $e^{-\infty} = 0$, the future
#    gets exactly zero weight. (Masking with `0` instead of `-inf` does not work: a score
#    of 0 still gets the weight $e^0 = 1$ before the normalisation.)
# 2. `renormalize_causal(attn_weights)`: the book's first approach. `attn_weights` are
#    softmax weights over *all* tokens; set the weights above the diagonal to 0 and divide
#    each row by its new sum, so that it sums to 1 again.
#
# Both give the same weights: the softmax of row $i$ is $e^{s_{ij}} / \sum_k e^{s_{ik}}$, and
# after zeroing the future and renormalising, the common denominator cancels, leaving
# $e^{s_{ij}} / \sum_{k \le i} e^{s_{ik}}$, exactly the softmax over the unmasked scores. So the
# future does not leak through the first softmax's denominator; the `-inf` version
# is simply cheaper (one softmax, no second normalisation).
#
# Hint: `torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)` is `True` above the
# diagonal; `masked_fill(mask, -torch.inf)`; `torch.tril` zeroes what is above the diagonal;
# `sum(dim=-1, keepdim=True)`.

# %% nbgrader={"grade": false, "grade_id": "ex4_causal_mask_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_attention_weights(attn_scores):
    ### BEGIN SOLUTION
    num_tokens = attn_scores.shape[-1]
    future = torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=attn_scores.device), diagonal=1)
    return torch.softmax(attn_scores.masked_fill(future, -torch.inf), dim=-1)
    ### END SOLUTION


def renormalize_causal(attn_weights):
    ### BEGIN SOLUTION
    masked = torch.tril(attn_weights)  # zero above the diagonal, in the last two dimensions
    return masked / masked.sum(dim=-1, keepdim=True)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_causal_mask_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(123))
expected = torch.softmax(scores.masked_fill(reference.causal_mask(6), -torch.inf), dim=-1)
with forbid_reference_impl():
    weights = causal_attention_weights(scores.clone())
expect_shape(weights, (6, 6), "causal_attention_weights(scores)", hint="the same shape as the scores")
nan_message = ("{} contains NaN: the softmax of a row gives NaN when that row holds a NaN (0 * inf is NaN, "
               "so a mask multiplied by -torch.inf makes NaNs) or when the whole row is -inf (every score "
               "masked). Mask by position, not by value: a boolean mask future = torch.triu(torch.ones(n, n, "
               "dtype=torch.bool), diagonal=1), then attn_scores.masked_fill(future, -torch.inf)")
expect_true(not bool(weights.isnan().any()), nan_message.format("causal_attention_weights(scores)"))
expect_true(bool((weights.triu(diagonal=1) == 0).all()),
            "causal_attention_weights(scores): the weights above the diagonal (the future) must be exactly 0: "
            "fill those scores with -torch.inf, not 0, before the softmax")
expect_close(weights, expected, "causal_attention_weights(scores)",
             hint="mask only above the diagonal (torch.triu(..., diagonal=1)), then softmax over dim=-1")
with forbid_reference_impl():
    renormalized = renormalize_causal(torch.softmax(scores, dim=-1))
expect_shape(renormalized, (6, 6), "renormalize_causal(weights)", hint="the same shape as the weights")
expect_close(renormalized.sum(dim=-1), torch.ones(6), "the sum of each row of renormalize_causal(weights)",
             hint="divide each row by its sum after masking: masked.sum(dim=-1, keepdim=True)")
expect_close(renormalized, expected, "renormalize_causal(torch.softmax(scores, dim=-1))",
             hint="zero the weights above the diagonal (torch.tril), then renormalise each row")
with forbid_reference_impl():
    weights = causal_attention_weights(torch.zeros(4, 4))
expect_true(not bool(weights.isnan().any()),
            nan_message.format("causal_attention_weights(torch.zeros(4, 4))") + "; a score of 0 is a real score "
            "(torch.tril also leaves zeros, so 'where the score is 0' does not find the future)")
expect_close(weights, torch.tril(torch.ones(4, 4)) / torch.arange(1, 5).view(4, 1),
             "causal_attention_weights(torch.zeros(4, 4))",
             hint="with equal scores, token i spreads its weight evenly over tokens 0..i: mask by position, "
                  "not where the score is 0")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
scores = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(321)) * 4
expected = torch.softmax(scores.masked_fill(reference.causal_mask(5), -torch.inf), dim=-1)
with forbid_reference_impl():
    weights = causal_attention_weights(scores.clone())
    renormalized = renormalize_causal(torch.softmax(scores, dim=-1))
expect_close(weights, expected, "causal_attention_weights of (batch, heads, tokens, tokens) scores",
             hint="the mask covers the last two dimensions and broadcasts over the others")
expect_close(renormalized, expected, "renormalize_causal of (batch, heads, tokens, tokens) weights")
with forbid_reference_impl():
    weights = causal_attention_weights(torch.zeros(4, 4))
    renormalized = renormalize_causal(torch.full((4, 4), 0.25))
expect_close(weights, torch.tril(torch.ones(4, 4)) / torch.arange(1, 5).view(4, 1),
             "causal_attention_weights(torch.zeros(4, 4))",
             hint="with equal scores, token i spreads its weight evenly over tokens 0..i")
expect_close(renormalized, torch.tril(torch.ones(4, 4)) / torch.arange(1, 5).view(4, 1),
             "renormalize_causal(torch.full((4, 4), 0.25))")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (2 points): split into heads and merge them back
#
# Multi-head attention (section 3.6.2) computes the queries, keys and values of all heads
# with one `d_out`-wide projection, then splits its output into `num_heads` pieces of
# `head_dim = d_out // num_heads` features. Write the two reshapes:
#
# * `split_heads(x, num_heads)`: `(batch, num_tokens, d_out)` -> `(batch, num_heads, num_tokens, head_dim)`.
#   Head `h` gets the features `h * head_dim` to `(h + 1) * head_dim - 1` of each token.
#   First `view` the last dimension as `(num_heads, head_dim)`, then swap the tokens and
#   heads dimensions with `transpose(1, 2)`, so that each head holds a
#   `(num_tokens, head_dim)` matrix (a direct `view` to the final shape mixes the tokens).
# * `merge_heads(x)`: the inverse, `(batch, num_heads, num_tokens, head_dim)` ->
#   `(batch, num_tokens, num_heads * head_dim)`: transpose back, then combine the heads.
#   A transposed tensor is not contiguous in memory: call `.contiguous()` before `.view`
#   (or use `.reshape`).
#
# So `merge_heads(split_heads(x, num_heads))` equals `x`.

# %% nbgrader={"grade": false, "grade_id": "ex5_heads_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def split_heads(x, num_heads):
    ### BEGIN SOLUTION
    b, num_tokens, d_out = x.shape
    return x.view(b, num_tokens, num_heads, d_out // num_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x):
    ### BEGIN SOLUTION
    b, num_heads, num_tokens, head_dim = x.shape
    return x.transpose(1, 2).contiguous().view(b, num_tokens, num_heads * head_dim)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_heads_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)  # (batch, num_tokens, d_out)
with forbid_reference_impl():
    heads = split_heads(x, 3)
expect_shape(heads, (2, 3, 4, 2), "split_heads(x, 3) for x of shape (2, 4, 6)",
             hint="(batch, num_heads, num_tokens, head_dim): did you transpose(1, 2) after the view?")
expect_equal(heads, reference.split_heads(x, 3), "split_heads(x, 3)",
             hint="view as (batch, num_tokens, num_heads, head_dim) first, then transpose(1, 2)")
# In attention, merge_heads gets attn_weights @ values: a new tensor, contiguous in memory as
# (batch, num_heads, num_tokens, head_dim), so transposing it makes it non-contiguous.
heads = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)  # (batch, num_heads, num_tokens, head_dim)
try:
    with forbid_reference_impl():
        merged = merge_heads(heads)
except RuntimeError as error:
    raise CheckFailed(f"merge_heads of a contiguous (2, 3, 4, 2) tensor, as attn_weights @ values gives, raised "
                      f"RuntimeError ({error}): after transpose(1, 2) the tensor is not contiguous in memory, "
                      "and .view needs it to be: call .contiguous() before .view(...), or use .reshape(...)") from error
expect_shape(merged, (2, 4, 6), "merge_heads of a (2, 3, 4, 2) tensor",
             hint="(batch, num_tokens, num_heads * head_dim): did you transpose back after merging heads?")
expect_equal(merged, reference.merge_heads(heads), "merge_heads of a (2, 3, 4, 2) tensor",
             hint="transpose(1, 2) back, so that each token gets the features of head 0, then head 1, ..., "
                  "before combining the heads with .contiguous().view(...)")
split = reference.split_heads(x, 3)
with forbid_reference_impl():
    merged = merge_heads(split)
expect_equal(merged, x, "merge_heads(split_heads(x, 3))",
             hint="transpose(1, 2) back before combining the heads with .contiguous().view(...)")
print("Exercise 5: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(123)
for shape, num_heads in [((3, 5, 8), 2), ((1, 7, 12), 4), ((2, 3, 4), 1), ((2, 3, 4), 4)]:
    x = torch.randn(*shape, generator=generator)
    split = reference.split_heads(x, num_heads)
    with forbid_reference_impl():
        heads = split_heads(x, num_heads)
        merged = merge_heads(split)
        round_trip = merge_heads(split_heads(x, num_heads))
    expect_equal(heads, split, f"split_heads(x, {num_heads}) for x of shape {shape}")
    expect_equal(merged, x, f"merge_heads of {num_heads} heads for x of shape {shape}")
    expect_equal(round_trip, x, f"merge_heads(split_heads(x, {num_heads})) for x of shape {shape}")
contiguous = torch.randn(2, 3, 5, 4, generator=generator)
with forbid_reference_impl():
    merged = merge_heads(contiguous)
expect_equal(merged, reference.merge_heads(contiguous), "merge_heads of a (2, 3, 5, 4) tensor")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (3 points): multi-head attention
#
# Write the `forward` method of the book's `MultiHeadAttention` (section 3.6.2); its
# `__init__` is given. For `x` of shape `(batch, num_tokens, d_in)`:
#
# 1. project `x` with `W_query`, `W_key`, `W_value` and split each result into heads:
#    `(batch, num_heads, num_tokens, head_dim)` (as in exercise 5: copy your code into this
#    cell, or write it inline);
# 2. `attn_scores = queries @ keys.transpose(2, 3)`, of shape `(batch, num_heads, num_tokens, num_tokens)`;
# 3. causal mask: fill the scores above the diagonal with `-torch.inf`, using the buffer
#    `self.mask` cropped to the input, `self.mask[:num_tokens, :num_tokens]` (inputs may be
#    shorter than `context_length`);
# 4. softmax of the scores divided by `sqrt(head_dim)` (each head's keys have `head_dim`
#    features, not `d_out`), over the last dimension, then `self.dropout`;
# 5. `(attn_weights @ values)`, merged back to `(batch, num_tokens, d_out)`, through `self.out_proj`.
#
# Write the attention yourself (not with `F.scaled_dot_product_attention`). Use the module
# `self.dropout`, so that `.eval()` turns dropout off.

# %% nbgrader={"grade": false, "grade_id": "ex6_multi_head_attention_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class MultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found
        self.dropout = nn.Dropout(dropout)
        # True above the diagonal: the future to hide. Not saved in the state dict.
        mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        ### BEGIN SOLUTION
        b, num_tokens, _ = x.shape

        def split(t):  # (b, num_tokens, d_out) -> (b, num_heads, num_tokens, head_dim)
            return t.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        queries, keys, values = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        attn_scores = queries @ keys.transpose(2, 3)
        attn_scores = attn_scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
        attn_weights = torch.softmax(attn_scores / self.head_dim**0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)
        context = (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_multi_head_attention_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

no_sdpa = mock.patch.object(F, "scaled_dot_product_attention", side_effect=CheckFailed(
    "write the attention yourself instead of calling F.scaled_dot_product_attention"))
torch.manual_seed(123)
expected_module = reference.MultiHeadAttention(d_in=3, d_out=4, context_length=8, dropout=0.0, num_heads=2)
batch = torch.stack((book_inputs(), book_inputs().flip(0)))  # (2, 6, 3): 6 tokens, context_length 8
with forbid_reference_impl(), no_sdpa:
    mha = MultiHeadAttention(d_in=3, d_out=4, context_length=8, dropout=0.0, num_heads=2)
    mha.load_state_dict(expected_module.state_dict())
try:
    with forbid_reference_impl(), no_sdpa:
        context_vecs = mha(batch)
except NotImplementedError:
    raise  # the exercise is not answered yet
except RuntimeError as error:
    raise CheckFailed(f"MultiHeadAttention on 6 tokens (context_length=8) raised RuntimeError: {error}; is the "
                      "mask cropped to the input, self.mask[:num_tokens, :num_tokens]?") from error
expect_own_implementation(mha, "your MultiHeadAttention")
expect_shape(context_vecs, (2, 6, 4), "MultiHeadAttention(d_in=3, d_out=4, num_heads=2)(batch)",
             hint="(batch, num_tokens, d_out): merge the heads back and apply out_proj")
changed = batch.clone()
changed[:, 3:] = 0.0  # change the last three tokens only
with forbid_reference_impl(), no_sdpa:
    context_changed = mha(changed)
expect_close(context_changed[:, :3], context_vecs[:, :3], "the context vectors of the first 3 tokens",
             hint="they changed when only later tokens changed: did you apply the causal mask (-inf above the diagonal)?")
expect_close(context_vecs, expected_module(batch), "MultiHeadAttention(d_in=3, d_out=4, num_heads=2)(batch)",
             hint="scale by sqrt(head_dim), not sqrt(d_out); transpose the heads back before merging; apply out_proj")
# Dropout: on in training mode (on the attention weights), off after .eval().
torch.manual_seed(123)
expected_module = reference.MultiHeadAttention(d_in=3, d_out=4, context_length=8, dropout=0.5, num_heads=2)
with forbid_reference_impl(), no_sdpa:
    mha = MultiHeadAttention(d_in=3, d_out=4, context_length=8, dropout=0.5, num_heads=2)
    mha.load_state_dict(expected_module.state_dict())
    mha.eval()
    context_eval = mha(batch)
expect_close(context_eval, expected_module.eval()(batch),
             "MultiHeadAttention(..., dropout=0.5).eval()(batch)",
             hint="in eval mode dropout must be off: apply the module self.dropout, which .eval() turns off "
                  "(F.dropout(x, p) keeps dropping in eval mode unless you pass training=self.training)")
expected_module.train()
torch.manual_seed(1)
expected = expected_module(batch)
with forbid_reference_impl(), no_sdpa:
    mha.train()
    torch.manual_seed(1)
    context_train = mha(batch)
expect_close(context_train, expected,
             "MultiHeadAttention(..., dropout=0.5) in training mode, after torch.manual_seed(1)",
             hint="apply self.dropout once, to the attention weights right after the softmax (not to the scores, "
                  "the values or the output)")
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for d_in, d_out, num_heads, qkv_bias, dropout, shape in [
    (8, 12, 3, True, 0.0, (3, 7, 8)),  # 7 tokens, shorter than the context length 10
    (8, 12, 1, False, 0.0, (2, 10, 8)),
    (6, 8, 4, False, 0.5, (2, 10, 6)),  # in eval mode, dropout is off
]:
    torch.manual_seed(321)
    expected_module = reference.MultiHeadAttention(d_in, d_out, 10, dropout, num_heads, qkv_bias).eval()
    x = torch.randn(*shape)
    with forbid_reference_impl(), no_sdpa:
        mha = MultiHeadAttention(d_in, d_out, 10, dropout, num_heads, qkv_bias)
        mha.load_state_dict(expected_module.state_dict())
        mha.eval()
        context_vecs = mha(x)
    expect_close(context_vecs, expected_module(x),
                 f"MultiHeadAttention(d_in={d_in}, d_out={d_out}, num_heads={num_heads}, "
                 f"qkv_bias={qkv_bias}, dropout={dropout}).eval() on inputs of shape {shape}",
                 hint="crop the mask to the input (self.mask[:num_tokens, :num_tokens]); use self.dropout")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (3 points): attention with a KV cache
#
# When a GPT generates text, each step adds one token. Without a cache, every step
# recomputes the keys and values of all previous tokens, although they never change
# (a token only attends to the past). A **KV cache** keeps them: each step computes the
# query, key and value of the *new* token only, appends the key and value to the cache,
# and lets the new query attend to every cached key, its own included. No mask is needed:
# everything in the cache is in the past (or is the new token itself).
#
# Write the `forward` method of `CachedMultiHeadAttention` (the same parameters as
# `MultiHeadAttention`, without dropout or mask):
#
# * `x_new` has shape `(batch, 1, d_in)`: one new token per sequence; return its context
#   vector, of shape `(batch, 1, d_out)`;
# * the cache holds the keys and values of all tokens so far in `self.cache_k` and
#   `self.cache_v`, each of shape `(batch, num_heads, tokens_so_far, head_dim)`, or `None`
#   before the first token (`reset_cache()` empties it); append along dimension 2 with
#   `torch.cat`;
# * then as in exercise 6: scores scaled by `sqrt(head_dim)`, softmax, times the cached
#   values, heads merged, `out_proj`.
#
# Fed the tokens of a sequence one at a time, the outputs must equal those of
# `MultiHeadAttention` on the whole sequence at once. Copy helpers from exercises 5 and
# 6 into this cell if you use them.

# %% nbgrader={"grade": false, "grade_id": "ex7_kv_cache_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CachedMultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, num_heads, qkv_bias=False):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.reset_cache()

    def reset_cache(self):
        self.cache_k = None  # (batch, num_heads, tokens so far, head_dim)
        self.cache_v = None

    def forward(self, x_new):
        ### BEGIN SOLUTION
        b, num_new, _ = x_new.shape

        def split(t):  # (b, num_new, d_out) -> (b, num_heads, num_new, head_dim)
            return t.view(b, num_new, self.num_heads, self.head_dim).transpose(1, 2)

        queries, keys, values = split(self.W_query(x_new)), split(self.W_key(x_new)), split(self.W_value(x_new))
        if self.cache_k is None:
            self.cache_k, self.cache_v = keys, values
        else:
            self.cache_k = torch.cat((self.cache_k, keys), dim=2)
            self.cache_v = torch.cat((self.cache_v, values), dim=2)
        # The new token may look at every cached token: all of them are in its past.
        attn_scores = queries @ self.cache_k.transpose(2, 3)
        attn_weights = torch.softmax(attn_scores / self.head_dim**0.5, dim=-1)
        context = (attn_weights @ self.cache_v).transpose(1, 2).contiguous().view(b, num_new, self.d_out)
        return self.out_proj(context)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_kv_cache_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

torch.manual_seed(123)
full = reference.MultiHeadAttention(d_in=3, d_out=4, context_length=6, dropout=0.0, num_heads=2)
batch = torch.stack((book_inputs(), book_inputs().flip(0)))  # (2, 6, 3)
expected = full(batch)
with forbid_reference_impl():
    cached = CachedMultiHeadAttention(d_in=3, d_out=4, num_heads=2)
    cached.load_state_dict(full.state_dict())
    steps = [cached(batch[:, t : t + 1]) for t in range(6)]
expect_own_implementation(cached, "your CachedMultiHeadAttention")
expect_shape(steps[0], (2, 1, 4), "the output of one step",
             hint="(batch, 1, d_out): the context vector of the new token only")
expect_close(steps[0], expected[:, :1], "the output of the first step",
             hint="the first token attends only to itself: its context vector is out_proj of its own value")
expect_true(isinstance(cached.cache_k, torch.Tensor) and isinstance(cached.cache_v, torch.Tensor),
            "after 6 steps, self.cache_k and self.cache_v should be tensors: store the keys and values in them")
expect_shape(cached.cache_k, (2, 2, 6, 2), "self.cache_k after 6 steps",
             hint="(batch, num_heads, tokens so far, head_dim): append each new key with torch.cat(..., dim=2)")
expect_close(torch.cat(steps, dim=1), expected, "the outputs of 6 steps, one token at a time",
             hint="the new query attends to all cached keys (no mask), scaled by sqrt(head_dim)")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
torch.manual_seed(321)
full = reference.MultiHeadAttention(d_in=8, d_out=12, context_length=9, dropout=0.0, num_heads=3, qkv_bias=True)
x = torch.randn(3, 9, 8)
expected = full(x)
with forbid_reference_impl():
    cached = CachedMultiHeadAttention(d_in=8, d_out=12, num_heads=3, qkv_bias=True)
    cached.load_state_dict(full.state_dict())
    steps = [cached(x[:, t : t + 1]) for t in range(9)]
expect_close(torch.cat(steps, dim=1), expected, "9 steps with 3 heads and qkv_bias=True")
expect_close(cached.cache_k, reference.split_heads(full.W_key(x), 3), "the cached keys after 9 steps")
expect_close(cached.cache_v, reference.split_heads(full.W_value(x), 3), "the cached values after 9 steps")
with forbid_reference_impl():
    cached.reset_cache()
    steps = [cached(x[:2, t : t + 1]) for t in range(4)]
expect_close(torch.cat(steps, dim=1), full(x[:2, :4]), "a new sequence after reset_cache()",
             hint="reset_cache() empties the cache: the next token starts a new sequence")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (2 points): stacked heads with two-dimensional outputs
#
# Before the efficient `MultiHeadAttention`, section 3.6.1 builds multi-head attention the
# simple way: `num_heads` independent causal attention modules, whose outputs are concatenated.
# Write that `MultiHeadAttentionWrapper`:
#
# * `__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias=False)` stores in
#   `self.heads` an `nn.ModuleList` of `num_heads` modules
#   `CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)` (the course's, given below:
#   you may call it);
# * `forward(x)`, for `x` of shape `(batch, num_tokens, d_in)`, runs every head on `x` and
#   concatenates their outputs along the last dimension: shape
#   `(batch, num_tokens, num_heads * d_out)`, head 0's features first.
#
# Then answer the book's exercise 3.2: with `d_in=3` and `num_heads=2`, the outputs have
# `2 * d_out` features, 4 in the chapter. Set `d_out_for_2d` to the `d_out` that makes them
# two-dimensional (2 features per token) while keeping `num_heads=2`, without changing the class:
# the function `d_out_for_2d()` returns it (an `int`).

# %% nbgrader={"grade": false, "grade_id": "ex8_wrapper_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
from reference_impl.attention import CausalAttention  # given: you may call it


class MultiHeadAttentionWrapper(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        ### BEGIN SOLUTION
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return torch.cat([head(x) for head in self.heads], dim=-1)
        ### END SOLUTION


def d_out_for_2d():
    ### BEGIN SOLUTION
    return 1  # each of the 2 heads gives 1 feature per token: 2 in all
    ### END SOLUTION

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_wrapper_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import attention as reference

given = (reference.CausalAttention,)
batch = torch.stack((book_inputs(), book_inputs().flip(0)))  # (2, 6, 3)
torch.manual_seed(123)
expected_module = reference.MultiHeadAttentionWrapper(d_in=3, d_out=2, context_length=6, dropout=0.0, num_heads=2)
with forbid_reference_impl(allowed=given):
    wrapper = MultiHeadAttentionWrapper(d_in=3, d_out=2, context_length=6, dropout=0.0, num_heads=2)
expect_true(not isinstance(wrapper, reference.MultiHeadAttentionWrapper),
            "your MultiHeadAttentionWrapper is the course's: write your own class")
expect_true(isinstance(getattr(wrapper, "heads", None), nn.ModuleList) and len(wrapper.heads) == 2,
            "MultiHeadAttentionWrapper(..., num_heads=2).heads should be an nn.ModuleList of 2 CausalAttention "
            "modules (a Python list hides them from .parameters() and load_state_dict)")
with forbid_reference_impl(allowed=given):
    wrapper.load_state_dict(expected_module.state_dict())
    context_vecs = wrapper(batch)
expect_shape(context_vecs, (2, 6, 4), "MultiHeadAttentionWrapper(d_in=3, d_out=2, num_heads=2)(batch)",
             hint="concatenate the heads' outputs along the last dimension: torch.cat([...], dim=-1)")
expect_close(context_vecs, expected_module(batch), "MultiHeadAttentionWrapper(d_in=3, d_out=2, num_heads=2)(batch)",
             hint="run every head on the same x and concatenate in order, head 0 first, along dim=-1")
with forbid_reference_impl(allowed=given):
    d_out = d_out_for_2d()
expect_type(d_out, int, "d_out_for_2d()")
with forbid_reference_impl(allowed=given):
    context_2d = MultiHeadAttentionWrapper(d_in=3, d_out=d_out, context_length=6, dropout=0.0, num_heads=2)(batch)
expect_shape(context_2d, (2, 6, 2), f"the outputs with d_out=d_out_for_2d()={d_out} and num_heads=2",
             hint="the wrapper concatenates num_heads outputs of d_out features each: num_heads * d_out = 2")
print("Exercise 8: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for d_in, d_out, num_heads, qkv_bias, num_tokens in [(5, 3, 4, True, 7), (4, 1, 1, False, 1)]:
    torch.manual_seed(321)
    expected_module = reference.MultiHeadAttentionWrapper(d_in, d_out, 8, 0.0, num_heads, qkv_bias)
    x = torch.randn(3, num_tokens, d_in)
    with forbid_reference_impl(allowed=given):
        wrapper = MultiHeadAttentionWrapper(d_in, d_out, 8, 0.0, num_heads, qkv_bias)
        wrapper.load_state_dict(expected_module.state_dict())
        context_vecs = wrapper(x)
    expect_close(context_vecs, expected_module(x),
                 f"MultiHeadAttentionWrapper(d_in={d_in}, d_out={d_out}, num_heads={num_heads}, qkv_bias={qkv_bias}) "
                 f"on {num_tokens} tokens")
expect_equal(d_out, 1, "d_out_for_2d()")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 9 (1 point): predict before you run
#
# Answer three questions about this chapter's ideas: in the function `predictions()` below,
# replace each `None` by your answer (and delete the `raise NotImplementedError()` line).
# Think first, then check your answers with a few lines of code if you like. The visible
# checks only check the kind of each answer; grading checks the values.
#
# 1. `answer_first_token_weight` (a `float`): in causal attention, after the mask and the
#    softmax, how much weight does the first token of a sequence give to itself?
# 2. `answer_scale` (a `float`): `MultiHeadAttention(d_in=768, d_out=768, context_length=1024,
#    dropout=0.1, num_heads=12)` divides the attention scores by what number before the softmax?
# 3. `answer_mha_parameters` (an `int`): how many trainable parameters does that
#    `MultiHeadAttention` (with `qkv_bias=False`, as in exercise 6) have? Its causal mask is
#    a buffer, not a parameter.

# %% nbgrader={"grade": false, "grade_id": "ex9_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def predictions():
    answer_first_token_weight = None  # a float
    answer_scale = None  # a float
    answer_mha_parameters = None  # an int
    ### BEGIN SOLUTION
    answer_first_token_weight = 1.0  # it may only look at itself: the softmax of one score is 1
    answer_scale = 8.0  # sqrt(head_dim) = sqrt(768 / 12) = sqrt(64)
    answer_mha_parameters = 4 * 768 * 768 + 768  # W_query, W_key, W_value, out_proj and its bias: 2,360,064
    ### END SOLUTION
    return answer_first_token_weight, answer_scale, answer_mha_parameters

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex9_predictions_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 9: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    answer_first_token_weight, answer_scale, answer_mha_parameters = predictions()
expect_type(answer_first_token_weight, (int, float), "answer_first_token_weight")
expect_true(0 <= answer_first_token_weight <= 1,
            f"answer_first_token_weight is {answer_first_token_weight}: an attention weight is between 0 and 1")
expect_type(answer_scale, (int, float), "answer_scale")
expect_true(answer_scale > 0, f"answer_scale is {answer_scale}: the scores are divided by a positive number")
expect_type(answer_mha_parameters, int, "answer_mha_parameters")
expect_true(answer_mha_parameters > 0, f"answer_mha_parameters is {answer_mha_parameters}: count the weights and biases")
print("Exercise 9: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
from reference_impl import attention as reference

expect_close(torch.tensor(float(answer_first_token_weight)), torch.tensor(1.0), "answer_first_token_weight")
expect_close(torch.tensor(float(answer_scale)), torch.tensor(64**0.5), "answer_scale")
expected = sum(p.numel() for p in reference.MultiHeadAttention(768, 768, 1024, 0.1, 12).parameters())
expect_equal(answer_mha_parameters, expected, "answer_mha_parameters")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
