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
# # Chapter 2 exercises: working with text data
#
# These exercises make you write the code of chapter 2 yourself: from splitting a text into
# words to the batches of token ids and the input embeddings that a GPT reads. The last
# exercise asks you to predict a few results before you run them.
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
# | 1. Split a text into tokens | 1 |
# | 2. Build a vocabulary | 1 |
# | 3. A tokenizer for unknown words and text boundaries | 2 |
# | 4. Input-target pairs with a sliding window | 2 |
# | 5. Byte pair encoding: count pairs and merge | 2 |
# | 6. Token and positional embeddings | 2 |
# | 7. A dataset and a data loader | 3 |
# | 8. Byte pair encoding: the training loop | 3 |
# | 9. Predict before you run | 1 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
import re

import tiktoken
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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
from reference_impl.download import read_text, use_tiktoken_cache

show_warnings_on_stdout()
use_tiktoken_cache()  # GPT-2's tokenizer files from the course data: works offline
verdict = read_text("the-verdict.txt")  # the short story of chapter 2
print(f"'The Verdict': {len(verdict):,} characters")


def load_embedding_weights(module, tok_weight, pos_weight):
    """Copy fixed weights into exercise 6's module: its parameters must be exactly
    tok_emb.weight and pos_emb.weight; buffers the module holds besides are kept."""
    parameters = sorted(name for name, _ in module.named_parameters())
    expect_true(parameters == ["pos_emb.weight", "tok_emb.weight"],
                f"the parameters of InputEmbedding are {parameters}, expected ['pos_emb.weight', "
                "'tok_emb.weight']: name the two nn.Embedding layers self.tok_emb and self.pos_emb, "
                "and give the module no other trainable parameters")
    expect_equal({name: tuple(p.shape) for name, p in module.named_parameters()},
                 {"tok_emb.weight": tuple(tok_weight.shape), "pos_emb.weight": tuple(pos_weight.shape)},
                 "the shapes of the parameters of InputEmbedding",
                 hint="tok_emb has vocab_size rows, pos_emb has context_length rows, both emb_dim columns")
    with torch.no_grad():
        module.tok_emb.weight.copy_(tok_weight)
        module.pos_emb.weight.copy_(pos_weight)


# %% [markdown]
# ## Exercise 1 (1 point): split a text into tokens
#
# Write `split_text(text)`, the book's first tokenizer step (section 2.2): split `text` into
# words and punctuation and return them as a list of strings.
#
# * Split on whitespace, on each of the characters `, . : ; ? _ ! " ( ) '` and on `--`.
# * Keep each punctuation character (and `--`) as a token of its own; drop whitespace and
#   empty strings.
#
# Example: `split_text("Hello, world. Is this-- a test?")` is
# `['Hello', ',', 'world', '.', 'Is', 'this', '--', 'a', 'test', '?']`.
#
# Hint: `re.split` with a pattern in parentheses (a capture group) keeps the separators it
# splits on; `str.strip()` tells whitespace-only pieces apart.

# %% nbgrader={"grade": false, "grade_id": "ex1_split_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def split_text(text):
    ### BEGIN SOLUTION
    pieces = re.split(r'([,.:;?_!"()\']|--|\s)', text)
    return [piece.strip() for piece in pieces if piece.strip()]
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_split_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    tokens = split_text("Hello, world. Is this-- a test?")
expect_type(tokens, list, "split_text('Hello, world. Is this-- a test?')")
expect_equal(
    tokens,
    ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"],
    "split_text('Hello, world. Is this-- a test?')",
    hint="punctuation and '--' are tokens of their own; whitespace is dropped",
)
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
from reference_impl import tokenizer as reference

for text in ['"Yes--quite so," she said (softly).', "  two\n\tlines  \n", "", "no_punctuation here: ok!"]:
    with forbid_reference_impl():
        tokens = split_text(text)
    expect_equal(tokens, reference.simple_split(text), f"split_text({text!r})")
with forbid_reference_impl():
    tokens = split_text(verdict)
expect_equal(len(tokens), 4690, "the number of tokens of 'The Verdict'")
expect_equal(tokens, reference.simple_split(verdict), "split_text(verdict)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): build a vocabulary
#
# Write `build_vocab(text)`: a dictionary that maps every distinct token of `text` to an
# integer id (section 2.3), followed by the two special tokens of section 2.5.
#
# * Split `text` exactly as in exercise 1.
# * The distinct tokens, sorted (Python's `sorted`), get the ids 0, 1, 2, ...
# * Then `"<|endoftext|>"` gets the next id and `"<|unk|>"` the one after it.
#
# Example: `build_vocab("b a b.")` is `{'.': 0, 'a': 1, 'b': 2, '<|endoftext|>': 3, '<|unk|>': 4}`.
# On "The Verdict" the vocabulary has 1,132 entries.

# %% nbgrader={"grade": false, "grade_id": "ex2_vocab_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def build_vocab(text):
    ### BEGIN SOLUTION
    pieces = re.split(r'([,.:;?_!"()\']|--|\s)', text)
    words = sorted({piece.strip() for piece in pieces if piece.strip()})
    tokens = words + ["<|endoftext|>", "<|unk|>"]
    return {token: token_id for token_id, token in enumerate(tokens)}
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_vocab_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    vocab = build_vocab("b a b.")
expect_type(vocab, dict, "build_vocab('b a b.')")
expect_equal(
    vocab,
    {".": 0, "a": 1, "b": 2, "<|endoftext|>": 3, "<|unk|>": 4},
    "build_vocab('b a b.')",
    hint="sorted distinct tokens first, then '<|endoftext|>' and '<|unk|>'",
)
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
from reference_impl import tokenizer as reference

with forbid_reference_impl():
    vocab = build_vocab(verdict)
expect_equal(len(vocab), 1132, "the size of the vocabulary of 'The Verdict'")
expect_equal(vocab, reference.build_vocab(verdict), "build_vocab(verdict)")
with forbid_reference_impl():
    vocab = build_vocab("Zebra zebra, 'Apple' apple--")
expect_equal(vocab, reference.build_vocab("Zebra zebra, 'Apple' apple--"), "build_vocab of a mixed-case text")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (2 points): a tokenizer for unknown words and text boundaries
#
# Write the class `SimpleTokenizerV2` of section 2.5:
#
# * `SimpleTokenizerV2(vocab)` keeps the vocabulary (`str -> int`) and its inverse (`int -> str`).
# * `encode(text)` splits `text` as in exercise 1 and returns the list of ids; a token that
#   is not in the vocabulary becomes the id of `"<|unk|>"`.
# * `decode(ids)` joins the tokens of `ids` with single spaces, then removes the space before
#   each of the punctuation characters `, . ? ! " ( ) '`
#   (hint: `re.sub(r'\s+([,.?!"()\'])', r'\1', text)`).
#
# With the vocabulary of "The Verdict", `decode(encode("Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."))`
# is `"<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."`.

# %% nbgrader={"grade": false, "grade_id": "ex3_tokenizer_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class SimpleTokenizerV2:
    def __init__(self, vocab):
        ### BEGIN SOLUTION
        self.str_to_int = dict(vocab)
        self.int_to_str = {token_id: token for token, token_id in vocab.items()}
        ### END SOLUTION

    def encode(self, text):
        ### BEGIN SOLUTION
        pieces = re.split(r'([,.:;?_!"()\']|--|\s)', text)
        tokens = [piece.strip() for piece in pieces if piece.strip()]
        unknown = self.str_to_int["<|unk|>"]
        return [self.str_to_int.get(token, unknown) for token in tokens]
        ### END SOLUTION

    def decode(self, ids):
        ### BEGIN SOLUTION
        text = " ".join(self.int_to_str[token_id] for token_id in ids)
        return re.sub(r'\s+([,.?!"()\'])', r"\1", text)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_tokenizer_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import tokenizer as reference

vocab = reference.build_vocab(verdict)
text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
with forbid_reference_impl():
    tokenizer = SimpleTokenizerV2(vocab)
    ids = tokenizer.encode(text)
    decoded = tokenizer.decode(ids)
expect_own_implementation(tokenizer, "your SimpleTokenizerV2")
expect_equal(ids, reference.SimpleTokenizerV2(vocab).encode(text), "encode(text)",
             hint="a word missing from the vocabulary gets the id of '<|unk|>'")
expect_equal(decoded, "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>.",
             "decode(encode(text))", hint="no space before punctuation")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
paragraph = verdict[1000:2500]
with forbid_reference_impl():
    tokenizer = SimpleTokenizerV2(vocab)
    ids = tokenizer.encode(paragraph)
    decoded = tokenizer.decode(ids)
expect_equal(ids, reference.SimpleTokenizerV2(vocab).encode(paragraph), "encode(a paragraph of the story)")
expect_equal(decoded, reference.SimpleTokenizerV2(vocab).decode(ids), "decode(a paragraph of the story)")
small_vocab = reference.build_vocab("the cat sat .")
with forbid_reference_impl():
    small = SimpleTokenizerV2(small_vocab)
    ids = small.encode("the dog sat , the cat ran .")
    decoded = small.decode(ids)
expect_equal(ids, [3, 5, 2, 5, 3, 1, 5, 0], "encode with another vocabulary")
expect_equal(decoded, "the <|unk|> sat <|unk|> the cat <|unk|>.", "decode with another vocabulary")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): input-target pairs with a sliding window
#
# An LLM learns to predict the next token: each input chunk comes with the same chunk shifted
# by one token, its targets (section 2.7). Write `sliding_window_pairs(token_ids, max_length, stride)`
# that returns a list of `(input_ids, target_ids)` pairs of lists of ints:
#
# * chunk `k` starts at position `start = k * stride`;
# * `input_ids = token_ids[start : start + max_length]` and `target_ids` is the same window moved
#   one position to the right;
# * only windows whose targets fit completely are kept, that is, starts below
#   `len(token_ids) - max_length`. With `max_length` ids or fewer there are no pairs.
#
# Example: `sliding_window_pairs([10, 11, 12, 13, 14, 15], max_length=2, stride=2)` is
# `[([10, 11], [11, 12]), ([12, 13], [13, 14])]`.

# %% nbgrader={"grade": false, "grade_id": "ex4_sliding_window_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sliding_window_pairs(token_ids, max_length, stride):
    ### BEGIN SOLUTION
    pairs = []
    for start in range(0, len(token_ids) - max_length, stride):
        input_ids = list(token_ids[start : start + max_length])
        target_ids = list(token_ids[start + 1 : start + max_length + 1])
        pairs.append((input_ids, target_ids))
    return pairs
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_sliding_window_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    pairs = sliding_window_pairs([10, 11, 12, 13, 14, 15], max_length=2, stride=2)
expect_type(pairs, list, "sliding_window_pairs(...)")
expect_equal(pairs, [([10, 11], [11, 12]), ([12, 13], [13, 14])],
             "sliding_window_pairs([10, 11, 12, 13, 14, 15], max_length=2, stride=2)",
             hint="the targets are the inputs moved one position to the right")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
from reference_impl.data import GPTDatasetV1

ids = list(range(100, 110))
with forbid_reference_impl():
    pairs = sliding_window_pairs(ids, max_length=4, stride=1)
expect_equal(pairs, [(ids[i:i + 4], ids[i + 1:i + 5]) for i in range(6)], "pairs with stride=1 (overlapping windows)")
with forbid_reference_impl():
    pairs = sliding_window_pairs(ids, max_length=3, stride=5)
expect_equal(pairs, [([100, 101, 102], [101, 102, 103]), ([105, 106, 107], [106, 107, 108])], "pairs with stride > max_length")
with forbid_reference_impl():
    pairs = sliding_window_pairs([1, 2, 3], max_length=3, stride=1)
expect_equal(pairs, [], "pairs of a text with max_length ids")
tokenizer = tiktoken.get_encoding("gpt2")
story_ids = tokenizer.encode(verdict)
with forbid_reference_impl():
    pairs = sliding_window_pairs(story_ids, max_length=256, stride=128)
dataset = GPTDatasetV1(verdict, tokenizer, max_length=256, stride=128)
expect_equal(len(pairs), len(dataset), "the number of pairs of 'The Verdict' (max_length=256, stride=128)")
expect_equal(pairs, [(x.tolist(), y.tolist()) for x, y in dataset], "the pairs of 'The Verdict'")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (2 points): byte pair encoding: count pairs and merge
#
# Byte pair encoding (section 2.6) starts from the bytes of a text and repeatedly replaces
# the most frequent pair of neighbouring ids by a new id. Write its two building blocks:
#
# * `get_pair_counts(ids)`: a dictionary from each pair of neighbouring ids `(a, b)` to the
#   number of times it occurs; `get_pair_counts([1, 2, 3, 1, 2])` is `{(1, 2): 2, (2, 3): 1, (3, 1): 1}`.
# * `merge(ids, pair, new_id)`: a new list where each occurrence of `pair`, scanning from left to
#   right, is replaced by `new_id`. Occurrences do not overlap:
#   `merge([5, 5, 5], (5, 5), 9)` is `[9, 5]`, and `merge([1, 2, 3, 1, 2], (1, 2), 256)` is `[256, 3, 256]`.
#
# Hint: `zip(ids, ids[1:])` gives the neighbouring pairs.

# %% nbgrader={"grade": false, "grade_id": "ex5_bpe_merge_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def get_pair_counts(ids):
    ### BEGIN SOLUTION
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    ### END SOLUTION


def merge(ids, pair, new_id):
    ### BEGIN SOLUTION
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_bpe_merge_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    counts = get_pair_counts([1, 2, 3, 1, 2])
    merged = merge([1, 2, 3, 1, 2], (1, 2), 256)
    overlapping = merge([5, 5, 5], (5, 5), 9)
expect_equal(dict(counts), {(1, 2): 2, (2, 3): 1, (3, 1): 1}, "get_pair_counts([1, 2, 3, 1, 2])")
expect_equal(merged, [256, 3, 256], "merge([1, 2, 3, 1, 2], (1, 2), 256)")
expect_equal(overlapping, [9, 5], "merge([5, 5, 5], (5, 5), 9)",
             hint="after a merge, continue after the pair: occurrences do not overlap")
print("Exercise 5: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
from reference_impl import tokenizer as reference

story_bytes = list(verdict[:3000].encode("utf-8"))
with forbid_reference_impl():
    counts = get_pair_counts(story_bytes)
expect_equal(dict(counts), dict(reference.get_pair_counts(story_bytes)), "get_pair_counts(the bytes of the story)")
generator = torch.Generator().manual_seed(123)
for _ in range(5):
    ids = torch.randint(0, 4, (50,), generator=generator).tolist()
    pair = tuple(torch.randint(0, 4, (2,), generator=generator).tolist())
    with forbid_reference_impl():
        merged = merge(ids, pair, 256)
        counts = get_pair_counts(ids)
    expect_equal(merged, reference.merge(ids, pair, 256), f"merge({ids}, {pair}, 256)")
    expect_equal(dict(counts), dict(reference.get_pair_counts(ids)), f"get_pair_counts({ids})")
with forbid_reference_impl():
    expect_equal(dict(get_pair_counts([7])), {}, "get_pair_counts([7])")
    expect_equal(merge([], (1, 2), 3), [], "merge([], (1, 2), 3)")
    expect_equal(merge([1, 2], (2, 1), 3), [1, 2], "merge([1, 2], (2, 1), 3)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (2 points): token and positional embeddings
#
# A GPT's input is the sum of a token embedding and an absolute position embedding
# (sections 2.8-2.9). Write the module `InputEmbedding(vocab_size, context_length, emb_dim)`:
#
# * two `nn.Embedding` layers named `tok_emb` (`vocab_size` rows) and `pos_emb`
#   (`context_length` rows), each with `emb_dim` columns;
# * `forward(idx)` takes a batch of token ids of shape `(batch_size, num_tokens)` and returns
#   `tok_emb(idx) + pos_emb(positions)` of shape `(batch_size, num_tokens, emb_dim)`, where
#   `positions` is `0, 1, ..., num_tokens - 1` (hint: `torch.arange`, on `idx.device`).
#
# The checks copy fixed weights into your layers with `load_state_dict`, so the names matter:
# the module's parameters are exactly `tok_emb.weight` and `pos_emb.weight`. It may hold
# buffers besides (for example the positions `0, 1, ..., context_length - 1`, made once with
# `register_buffer`): the checks leave them as your `__init__` made them.

# %% nbgrader={"grade": false, "grade_id": "ex6_embeddings_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class InputEmbedding(nn.Module):
    def __init__(self, vocab_size, context_length, emb_dim):
        super().__init__()
        ### BEGIN SOLUTION
        self.tok_emb = nn.Embedding(vocab_size, emb_dim)
        self.pos_emb = nn.Embedding(context_length, emb_dim)
        ### END SOLUTION

    def forward(self, idx):
        ### BEGIN SOLUTION
        positions = torch.arange(idx.shape[1], device=idx.device)
        return self.tok_emb(idx) + self.pos_emb(positions)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_embeddings_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
generator = torch.Generator().manual_seed(123)
tok_weight = torch.randn(6, 3, generator=generator)
pos_weight = torch.randn(4, 3, generator=generator)
idx = torch.tensor([[2, 3, 5, 1], [0, 0, 4, 5]])
with forbid_reference_impl():
    embedding = InputEmbedding(vocab_size=6, context_length=4, emb_dim=3)
load_embedding_weights(embedding, tok_weight, pos_weight)
with forbid_reference_impl():
    out = embedding(idx)
expect_shape(out, (2, 4, 3), "InputEmbedding output", hint="(batch_size, num_tokens, emb_dim)")
expect_close(out, tok_weight[idx] + pos_weight[:4], "InputEmbedding output",
             hint="add the embedding of position 0, 1, 2, ... to the token embeddings")
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
with forbid_reference_impl():
    short = embedding(idx[:, :2])
expect_close(short, tok_weight[idx[:, :2]] + pos_weight[:2], "the output for 2 tokens (fewer than context_length)")
from reference_impl.model import GPTConfig, GPTModel

torch.manual_seed(123)
model = GPTModel(GPTConfig(vocab_size=50257, context_length=4, emb_dim=256, n_heads=4, n_layers=1))
with forbid_reference_impl():
    embedding = InputEmbedding(vocab_size=50257, context_length=4, emb_dim=256)
load_embedding_weights(embedding, model.tok_emb.weight, model.pos_emb.weight)
idx = torch.tensor(tiktoken.get_encoding("gpt2").encode(verdict)[:32]).view(8, 4)
with forbid_reference_impl():
    out = embedding(idx)
expect_shape(out, (8, 4, 256), "the input embeddings of a batch of 'The Verdict'")
expect_close(out, model.tok_emb(idx) + model.pos_emb(torch.arange(4)), "the input embeddings of a batch of 'The Verdict'")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (3 points): a dataset and a data loader
#
# Turn a text into batches of input-target pairs, as in section 2.7.
#
# 1. `GPTDatasetV1(txt, tokenizer, max_length, stride)`, a `torch.utils.data.Dataset`: in
#    `__init__`, encode `txt` with `tokenizer.encode(txt, allowed_special={"<|endoftext|>"})` and cut
#    the ids into windows as in exercise 4 (starts `0, stride, 2 * stride, ...` below
#    `len(ids) - max_length`). Item `i` is the pair `(input_ids, target_ids)` of the i-th window,
#    each a 1-D `torch.long` tensor of `max_length` ids. Also write `__len__` and `__getitem__`.
# 2. `create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True, num_workers=0, tokenizer=None)`:
#    a `DataLoader` over your dataset with these settings; with `tokenizer=None`, use GPT-2's BPE,
#    `tiktoken.get_encoding("gpt2")`.
#
# On "The Verdict" with `max_length=4, stride=4` the dataset has 1,286 items and the first is
# `(tensor([40, 367, 2885, 1464]), tensor([367, 2885, 1464, 1807]))`.

# %% nbgrader={"grade": false, "grade_id": "ex7_dataloader_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class GPTDatasetV1(Dataset):
    def __init__(self, txt, tokenizer, max_length, stride):
        ### BEGIN SOLUTION
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        self.input_ids = []
        self.target_ids = []
        for start in range(0, len(token_ids) - max_length, stride):
            self.input_ids.append(torch.tensor(token_ids[start : start + max_length]))
            self.target_ids.append(torch.tensor(token_ids[start + 1 : start + max_length + 1]))
        ### END SOLUTION

    def __len__(self):
        ### BEGIN SOLUTION
        return len(self.input_ids)
        ### END SOLUTION

    def __getitem__(self, idx):
        ### BEGIN SOLUTION
        return self.input_ids[idx], self.target_ids[idx]
        ### END SOLUTION


def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
                         drop_last=True, num_workers=0, tokenizer=None):
    ### BEGIN SOLUTION
    if tokenizer is None:
        tokenizer = tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_dataloader_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import data as reference

tokenizer = tiktoken.get_encoding("gpt2")
with forbid_reference_impl():
    dataset = GPTDatasetV1(verdict, tokenizer, max_length=4, stride=4)
    n_items = len(dataset)
    first = dataset[0]
expect_equal(n_items, 1286, "len(GPTDatasetV1(verdict, tokenizer, max_length=4, stride=4))",
             hint="windows start at 0, stride, 2 * stride, ... below len(ids) - max_length")
expect_equal(list(first), [torch.tensor([40, 367, 2885, 1464]), torch.tensor([367, 2885, 1464, 1807])],
             "dataset[0]")
with forbid_reference_impl():
    inputs, targets = next(iter(create_dataloader_v1(verdict, batch_size=8, max_length=4, stride=4, shuffle=False)))
expect_shape(inputs, (8, 4), "the inputs of the first batch")
expect_equal(inputs, torch.stack([reference.GPTDatasetV1(verdict, tokenizer, 4, 4)[i][0] for i in range(8)]),
             "the inputs of the first batch with shuffle=False",
             hint="pass shuffle on to the DataLoader: with shuffle=False the batches keep the text's order")
text = "One two three<|endoftext|>Four five six seven eight."
try:
    with forbid_reference_impl():
        item = GPTDatasetV1(text, tokenizer, max_length=3, stride=3)[0]
except ValueError as error:
    raise CheckFailed(f"GPTDatasetV1 of a text holding '<|endoftext|>' raised ValueError "
                      f"({str(error).splitlines()[0]}): encode with "
                      "tokenizer.encode(txt, allowed_special={'<|endoftext|>'}), so that the text boundary "
                      "becomes its token id 50256") from error
expect_equal(list(item), list(reference.GPTDatasetV1(text, tokenizer, 3, 3)[0]),
             "the first item of a text holding '<|endoftext|>'",
             hint="encode with allowed_special={'<|endoftext|>'}: the text boundary is one token, id 50256")
n_windows = len(reference.GPTDatasetV1(verdict, tokenizer, 64, 64))  # 80 windows: 13 batches of 6, and 2 left
with forbid_reference_impl():
    n_default = len(create_dataloader_v1(verdict, batch_size=6, max_length=64, stride=64))
    n_kept = len(create_dataloader_v1(verdict, batch_size=6, max_length=64, stride=64, drop_last=False))
expect_equal(n_default, n_windows // 6, f"the number of batches of {n_windows} windows with batch_size=6",
             hint="drop_last=True by default: the last, incomplete batch is dropped")
expect_equal(n_kept, -(-n_windows // 6), f"the number of batches of {n_windows} windows with drop_last=False",
             hint="pass drop_last on to the DataLoader: with drop_last=False the last, smaller batch is kept")
torch.manual_seed(123)
with forbid_reference_impl():
    shuffled, _ = next(iter(create_dataloader_v1(verdict, batch_size=4, max_length=16, stride=16)))
torch.manual_seed(123)
expected, _ = next(iter(reference.create_dataloader_v1(verdict, batch_size=4, max_length=16, stride=16,
                                                       tokenizer=tokenizer)))
expect_equal(shuffled, expected, "the first batch with the default shuffle=True (after torch.manual_seed(123))",
             hint="shuffle=True by default: pass shuffle=shuffle to the DataLoader, which then draws the order "
                  "from torch's random generator")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for max_length, stride in [(4, 1), (256, 128), (7, 10)]:
    expected = reference.GPTDatasetV1(verdict, tokenizer, max_length, stride)
    with forbid_reference_impl():
        dataset = GPTDatasetV1(verdict, tokenizer, max_length, stride)
        items = [dataset[i] for i in range(len(dataset))]
    expect_equal(len(items), len(expected), f"the number of items (max_length={max_length}, stride={stride})")
    expect_equal([list(item) for item in items], [list(item) for item in expected],
                 f"the items (max_length={max_length}, stride={stride})")
text = "One<|endoftext|>Two three four five six seven eight nine ten."
with forbid_reference_impl():
    item = GPTDatasetV1(text, tokenizer, max_length=3, stride=3)[0]
expect_equal(list(item), list(reference.GPTDatasetV1(text, tokenizer, 3, 3)[0]), "the first item of a text with <|endoftext|>")
with forbid_reference_impl():
    batches = list(create_dataloader_v1(verdict, batch_size=5, max_length=64, stride=64, shuffle=False, drop_last=False))
expected = list(reference.create_dataloader_v1(verdict, batch_size=5, max_length=64, stride=64, shuffle=False,
                                               drop_last=False, tokenizer=tokenizer))
expect_equal(len(batches), len(expected), "the number of batches with drop_last=False")
expect_equal([list(batch) for batch in batches], [list(batch) for batch in expected], "the batches with drop_last=False")
torch.manual_seed(123)
with forbid_reference_impl():
    loader = create_dataloader_v1(verdict, batch_size=4, max_length=16, stride=16)
    batches = list(loader)
torch.manual_seed(123)
expected = list(reference.create_dataloader_v1(verdict, batch_size=4, max_length=16, stride=16, tokenizer=tokenizer))
expect_equal(len(batches), len(expected), "the number of batches with the default drop_last=True")
expect_equal([list(batch) for batch in batches], [list(batch) for batch in expected],
             "the shuffled batches (same seed)", hint="shuffle=True by default")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (3 points): byte pair encoding: the training loop
#
# Write `train_bpe(text, vocab_size)`, which learns the merges of a byte-level BPE tokenizer
# and returns them as a list of pairs of ids, in the order they were learnt. Merge `i` creates
# the id `256 + i`, so `vocab_size - 256` merges are learnt.
#
# 1. Cut `text` into pieces with GPT-2's pre-tokenizer, `pretokenize(text)` (given below):
#    merges never cross a piece boundary, so `"dog."` can never become one token.
# 2. Turn each piece into the list of its UTF-8 bytes: `list(piece.encode("utf-8"))`.
# 3. Repeat: count the pairs of neighbouring ids inside all pieces, take the most frequent
#    pair, record it, and merge it into the new id in every piece. When several pairs are
#    equally frequent, take the smallest pair (compare the first ids, then the second ones):
#    `max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))`. Stop early when no
#    piece has two ids left.
#
# For this exercise you may call the course's `pretokenize`, `get_pair_counts` and `merge`
# (imported below as `pretokenize`, `reference_pair_counts` and `reference_merge`), or your own
# from exercise 5. `reference_pair_counts(ids, counts)` adds the pairs of `ids` to the `Counter`
# `counts` and returns it.
#
# Examples: `train_bpe("aaaaaaabababab", 259)` is `[(97, 97), (97, 98), (257, 257)]` (no ties:
# `(97, 97)` is `"aa"`, 256; `(97, 98)` is `"ab"`, 257). In `train_bpe("aaabdaaabac", 259)`,
# which is `[(97, 97), (97, 98), (256, 257)]`, the second merge is a tie: `(256, 97)` and
# `(97, 98)` both occur twice, and the smaller pair, `(97, 98)`, wins.

# %% nbgrader={"grade": false, "grade_id": "ex8_bpe_train_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
from collections import Counter

from reference_impl.tokenizer import get_pair_counts as reference_pair_counts
from reference_impl.tokenizer import merge as reference_merge
from reference_impl.tokenizer import pretokenize


def train_bpe(text, vocab_size):
    ### BEGIN SOLUTION
    pieces = [list(piece.encode("utf-8")) for piece in pretokenize(text)]
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter()
        for ids in pieces:
            reference_pair_counts(ids, counts)
        if not counts:
            break
        pair = max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))
        pieces = [reference_merge(ids, pair, new_id) for ids in pieces]
        merges.append(pair)
    return merges
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_bpe_train_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import tokenizer as reference

may_call = (reference.pretokenize, reference.get_pair_counts, reference.merge)
with forbid_reference_impl(allowed=may_call):
    merges = train_bpe("aaaaaaabababab", 259)
expect_type(merges, list, "train_bpe('aaaaaaabababab', 259)")
expect_equal([tuple(pair) for pair in merges], [(97, 97), (97, 98), (257, 257)], "train_bpe('aaaaaaabababab', 259)",
             hint="(no ties in this text) at each step take the most frequent pair over all pieces, merge it "
                  "everywhere, and record it; merge i creates the id 256 + i")
with forbid_reference_impl(allowed=may_call):
    merges = train_bpe("aaabdaaabac", 259)
expect_equal([tuple(pair) for pair in merges], [(97, 97), (97, 98), (256, 257)], "train_bpe('aaabdaaabac', 259)",
             hint="in the second step (256, 97) and (97, 98) both occur twice: a tie goes to the smallest pair "
                  "(compare the first ids, then the second ones), max(counts, key=lambda pair: "
                  "(counts[pair], -pair[0], -pair[1])); max(counts, key=counts.get) takes the pair seen first")
print("Exercise 8: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
def expected_merges(text, vocab_size):
    return reference.BPETokenizer.train(text, vocab_size, special_tokens=()).merges

for text, vocab_size in [("the cat sat on the mat. the end", 270), ("abab abab", 300), (verdict[:3000], 300)]:
    with forbid_reference_impl(allowed=may_call):
        merges = train_bpe(text, vocab_size)
    expect_equal([tuple(pair) for pair in merges], expected_merges(text, vocab_size),
                 f"train_bpe({text[:20]!r}..., {vocab_size})",
                 hint="ties go to the smallest pair; pairs never span two pieces of pretokenize")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 9 (1 point): predict before you run
#
# Answer three questions about this chapter's ideas: in the function `predictions()` below,
# replace each `None` by your answer (and delete the `raise NotImplementedError()` line).
# Think first, then check your answers with a few lines of code if you like
# (GPT-2's tokenizer is `tiktoken.get_encoding("gpt2")`). The visible checks only check the
# kind of each answer; grading checks the values.
#
# 1. `answer_endoftext_id` (an `int`): the token id of `"<|endoftext|>"` in GPT-2's
#    vocabulary of 50,257 tokens.
# 2. `answer_num_pairs` (an `int`): how many `(input, target)` pairs does the sliding window of
#    exercise 4 make from 10 token ids with `max_length=4` and `stride=2`?
# 3. `answer_unknown_word` (one of the strings `"a"`, `"b"`, `"c"`): what does GPT-2's BPE
#    tokenizer do with a made-up word such as `"Akwirw"`, which is in no dictionary?
#    * `"a"`: it encodes it as the id of an unknown-word token, like `<|unk|>` in exercise 3;
#    * `"b"`: it encodes it as several smaller pieces (subwords, single characters or bytes)
#      that are in its vocabulary, so that decoding gives the word back;
#    * `"c"`: it raises an error, since the word is not in its vocabulary.

# %% nbgrader={"grade": false, "grade_id": "ex9_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def predictions():
    answer_endoftext_id = None  # an int
    answer_num_pairs = None  # an int
    answer_unknown_word = None  # "a", "b" or "c"
    ### BEGIN SOLUTION
    answer_endoftext_id = 50256  # the last id: 256 bytes and 50,000 merges come first
    answer_num_pairs = 3  # starts 0, 2, 4 (below 10 - 4 = 6)
    answer_unknown_word = "b"  # byte-level BPE can encode any text: no unknown-word token is needed
    ### END SOLUTION
    return answer_endoftext_id, answer_num_pairs, answer_unknown_word

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex9_predictions_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 9: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    answer_endoftext_id, answer_num_pairs, answer_unknown_word = predictions()
expect_type(answer_endoftext_id, int, "answer_endoftext_id")
expect_true(0 <= answer_endoftext_id < 50257,
            f"answer_endoftext_id is {answer_endoftext_id}: a token id of GPT-2 is between 0 and 50256")
expect_type(answer_num_pairs, int, "answer_num_pairs")
expect_true(answer_num_pairs >= 0, f"answer_num_pairs is {answer_num_pairs}: a number of pairs is at least 0")
expect_true(answer_unknown_word in ("a", "b", "c"),
            f"answer_unknown_word is {answer_unknown_word!r}: set it to one of the strings 'a', 'b' or 'c'")
print("Exercise 9: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
gpt2 = tiktoken.get_encoding("gpt2")
expect_equal(answer_endoftext_id, gpt2.encode("<|endoftext|>", allowed_special={"<|endoftext|>"})[0],
             "answer_endoftext_id")
expect_equal(answer_num_pairs, len(range(0, 10 - 4, 2)), "answer_num_pairs")
expect_equal(answer_unknown_word, "b", "answer_unknown_word")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
