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
# # Chapter 6 exercises: fine-tuning for classification, and LoRA
#
# These exercises make you write the code of chapter 6 yourself: balancing and splitting the
# SMS spam data, padding the messages to one length, turning a GPT into a classifier, and
# measuring its accuracy on the right token. The last two exercises build appendix E's LoRA,
# which fine-tunes a few small matrices instead of the model's weights. The checks use the
# real SMS Spam Collection, GPT-2's tokenizer and tiny random GPTs: no pretrained weights are
# needed, and each check runs in well under a second.
#
# Exercise 8 gives you the course's `LoRALayer` (from `reference_impl`), so that it is
# graded on its own; you may call that part, and only that part, where the exercise says so.
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
# | 1. Balance the classes | 1 |
# | 2. Split into training, validation and test sets | 1 |
# | 3. Pad the messages to one length | 2 |
# | 4. A classification head, and what to train | 2 |
# | 5. Predict before you train | 2 |
# | 6. Accuracy on the last real token | 3 |
# | 7. The LoRA layer | 2 |
# | 8. LoRA in every linear layer of a GPT | 3 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
import copy
import math
import random

import torch
import torch.nn.functional as F
from torch import nn

import reference_impl.lora  # the course's LoRALayer, which exercise 8 gives you
from course_tools.checks import (
    CheckFailed,
    expect_close,
    expect_equal,
    expect_own_implementation,
    expect_raises,
    expect_shape,
    expect_true,
    expect_type,
    forbid_reference_impl,
    run_checked,
    show_warnings_on_stdout,
)
from reference_impl.classify import load_sms_spam
from reference_impl.model import GPTConfig, GPTModel
from reference_impl.tokenizer import get_tokenizer

show_warnings_on_stdout()
tokenizer = get_tokenizer("gpt2")  # tiktoken's GPT-2 encoding, from the course data: works offline
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, which pads the messages

sms_rows = load_sms_spam()  # (label, text) pairs, label "ham" or "spam"
print(f"SMS Spam Collection: {len(sms_rows):,} messages, "
      f"{sum(label == 'spam' for label, _ in sms_rows):,} of them spam")


def tiny_gpt(seed=123, **changes):
    """The course's GPTModel, tiny and with random weights (the same ones for the same seed)."""
    cfg = dict(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)
    torch.manual_seed(seed)
    return GPTModel(GPTConfig(**{**cfg, **changes}))


def count_trainable(model):
    """The number of parameters of `model` that training changes (requires_grad=True)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class TokenParityClassifier(nn.Module):
    """A stand-in classifier for the checks of exercise 6: at each position it predicts the
    class `token_id % 2` (logits of shape (batch, num_tokens, 2)), whatever came before."""

    def forward(self, input_ids):
        odd = (input_ids % 2).float()
        return torch.stack((1.0 - odd, odd), dim=-1)



# %% [markdown]
# ## Exercise 1 (1 point): balance the classes
#
# The SMS data holds 4,827 "ham" messages and only 747 "spam" ones. A classifier trained on
# it could reach 87% accuracy by always answering "ham". The book balances the classes by
# *undersampling*: it keeps all spam messages and as many ham messages, picked at random
# (section 6.2). Write `balance_classes(rows, seed=123)`:
#
# * `rows` is a list of `(label, text)` pairs with the label `"ham"` or `"spam"`;
# * pick `len(spam)` ham rows with `random.Random(seed).sample(ham, len(spam))`, where `ham`
#   and `spam` are the lists of ham and spam rows in their original order (a private
#   random generator: the result does not depend on any other random call);
# * return a new list: the picked ham rows (in the order `sample` returns them), then all
#   spam rows in their original order. Do not change `rows`;
# * raise a `ValueError` when there are fewer ham than spam rows.
#
# On the SMS data, `balance_classes(sms_rows)` has 1,494 rows: 747 ham, then 747 spam.

# %% nbgrader={"grade": false, "grade_id": "ex1_balance_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def balance_classes(rows, seed=123):
    ### BEGIN SOLUTION
    spam = [row for row in rows if row[0] == "spam"]
    ham = [row for row in rows if row[0] == "ham"]
    if len(ham) < len(spam):
        raise ValueError(f"fewer ham ({len(ham)}) than spam ({len(spam)}) rows: nothing to undersample")
    return random.Random(seed).sample(ham, len(spam)) + spam
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_balance_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import classify as reference

rows = list(sms_rows)
with forbid_reference_impl():
    balanced = balance_classes(rows)
expect_type(balanced, list, "balance_classes(sms_rows)")
expect_equal(rows, sms_rows, "sms_rows after balance_classes(sms_rows)", hint="do not change the input list")
expect_equal(len(balanced), 1494, "the number of rows of balance_classes(sms_rows)",
             hint="all 747 spam rows and as many ham rows")
expect_equal([label for label, _ in balanced], ["ham"] * 747 + ["spam"] * 747,
             "the labels of balance_classes(sms_rows), in order", hint="the picked ham rows first, then the spam rows")
expect_equal(balanced[747:], [row for row in sms_rows if row[0] == "spam"], "the spam rows of the result",
             hint="keep every spam row, in its original order")
expect_equal(balanced, reference.create_balanced_dataset(sms_rows, seed=123), "balance_classes(sms_rows)",
             hint="pick the ham rows with random.Random(seed).sample(ham, len(spam)), ham in its original order")
small = [("ham", "a"), ("spam", "b"), ("spam", "c"), ("ham", "d"), ("ham", "e"), ("ham", "f")]
with forbid_reference_impl():
    result = balance_classes(small, seed=1)
expect_equal(result, reference.create_balanced_dataset(small, seed=1), f"balance_classes({small}, seed=1)",
             hint="random.Random(seed).sample(ham, len(spam)) + spam")
expect_raises(ValueError, balance_classes, [("spam", "a"), ("ham", "b"), ("spam", "c")],
              what="balance_classes of 2 spam rows and 1 ham row", hint="there are not enough ham rows to pick")
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for seed in (0, 7, 2024):
    with forbid_reference_impl():
        result = balance_classes(list(sms_rows), seed=seed)
    expect_equal(result, reference.create_balanced_dataset(sms_rows, seed=seed), f"balance_classes(sms_rows, seed={seed})")
same = [("ham", "x"), ("spam", "y")]
with forbid_reference_impl():
    result = balance_classes(same, seed=3)
expect_equal(result, [("ham", "x"), ("spam", "y")], "balance_classes of one ham and one spam row")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): split into training, validation and test sets
#
# Write `random_split(rows, train_frac=0.7, validation_frac=0.1, seed=123)` (section 6.2):
#
# * shuffle a **copy** of `rows` with `random.Random(seed).shuffle(...)` (do not change `rows`);
# * the first `int(len(rows) * train_frac)` shuffled rows are the training set, the next
#   `int(len(rows) * validation_frac)` the validation set, and the rest the test set;
# * return the three lists `(train, validation, test)`;
# * raise a `ValueError` when a fraction is negative or `train_frac + validation_frac > 1`.
#
# The balanced SMS data (1,494 rows) splits into 1,045 training, 149 validation and 300 test
# messages.

# %% nbgrader={"grade": false, "grade_id": "ex2_split_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def random_split(rows, train_frac=0.7, validation_frac=0.1, seed=123):
    ### BEGIN SOLUTION
    if train_frac < 0 or validation_frac < 0 or train_frac + validation_frac > 1:
        raise ValueError(
            f"train_frac ({train_frac}) and validation_frac ({validation_frac}) must be >= 0 with a sum <= 1"
        )
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    train_end = int(len(shuffled) * train_frac)
    validation_end = train_end + int(len(shuffled) * validation_frac)
    return shuffled[:train_end], shuffled[train_end:validation_end], shuffled[validation_end:]
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_split_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import classify as reference

balanced = reference.create_balanced_dataset(sms_rows)
rows = list(balanced)
with forbid_reference_impl():
    parts = random_split(rows)
expect_equal(rows, balanced, "the rows after random_split(rows)", hint="shuffle a copy: list(rows)")
expect_type(parts, tuple, "random_split(rows)")
expect_equal(len(parts), 3, "the number of parts of random_split(rows)", hint="return (train, validation, test)")
expect_equal([len(part) for part in parts], [1045, 149, 300], "the sizes of (train, validation, test)",
             hint="int(len(rows) * train_frac) training rows, int(len(rows) * validation_frac) validation "
                  "rows, and the rest for testing")
expect_equal(sorted(parts[0] + parts[1] + parts[2]), sorted(balanced), "the rows of the three parts together",
             hint="every row must be in exactly one part")
expect_equal(list(parts), list(reference.random_split(balanced)), "random_split(rows)",
             hint="shuffle with random.Random(seed).shuffle(copy), then cut the shuffled list")
with forbid_reference_impl():
    parts = random_split(list(range(10)), 0.5, 0.2, seed=1)
expect_equal(list(parts), list(reference.random_split(list(range(10)), 0.5, 0.2, seed=1)),
             "random_split(list(range(10)), 0.5, 0.2, seed=1)")
expect_raises(ValueError, random_split, list(range(10)), 0.8, 0.3, what="random_split(rows, 0.8, 0.3)",
              hint="the fractions add up to more than 1")
expect_raises(ValueError, random_split, list(range(10)), 0.5, -0.1, what="random_split(rows, 0.5, -0.1)",
              hint="a fraction cannot be negative")
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for args in [(list(range(7)), 1.0, 0.0, 5), (list(range(101)), 0.3, 0.3, 9), ([], 0.7, 0.1, 123),
             (list(balanced), 0.8, 0.05, 42)]:
    with forbid_reference_impl():
        parts = random_split(*args)
    expect_equal(list(parts), list(reference.random_split(*args)), f"random_split of {len(args[0])} rows, "
                 f"train_frac={args[1]}, validation_frac={args[2]}, seed={args[3]}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (2 points): pad the messages to one length
#
# A batch is one tensor, so its messages must have one length. The book pads every message
# with `<|endoftext|>` (token id 50256) to the length of the longest one (section 6.3).
# Write `pad_messages(texts, tokenizer, max_length=None, pad_token_id=50256)`:
#
# * encode each text with `tokenizer.encode(text)`;
# * with `max_length` given, cut each list of ids to its first `max_length` ids and pad to
#   exactly `max_length`; without it (`None`), pad to the length of the longest encoded text;
# * pad at the **end** with `pad_token_id`;
# * return a tensor of dtype `torch.long` and shape `(len(texts), length)`;
# * raise a `ValueError` when `texts` is empty, or `max_length` is given and smaller than 1.
#
# `pad_messages(["Free entry!", "Hi", "You won a prize, call now"], tokenizer)` is
#
# ```
# tensor([[11146,  5726,     0, 50256, 50256, 50256, 50256],
#         [17250, 50256, 50256, 50256, 50256, 50256, 50256],
#         [ 1639,  1839,   257, 11596,    11,   869,   783]])
# ```
#
# and with `max_length=4` the rows are `[11146, 5726, 0, 50256]`, `[17250, 50256, 50256, 50256]`
# and `[1639, 1839, 257, 11596]`.

# %% nbgrader={"grade": false, "grade_id": "ex3_padding_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pad_messages(texts, tokenizer, max_length=None, pad_token_id=50256):
    ### BEGIN SOLUTION
    if len(texts) == 0:
        raise ValueError("pad_messages got no texts")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive integer or None, got {max_length}")
    encoded = [tokenizer.encode(text) for text in texts]
    if max_length is None:
        max_length = max(len(ids) for ids in encoded)
    encoded = [ids[:max_length] for ids in encoded]
    return torch.tensor([ids + [pad_token_id] * (max_length - len(ids)) for ids in encoded], dtype=torch.long)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_padding_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import classify as reference


def expected_padding(texts, max_length=None, pad_token_id=50256):
    # SpamDataset's padding, written out: SpamDataset itself refuses a pad id that ends a
    # message (its last real token could not be found), which this check uses on purpose.
    if pad_token_id == 50256:
        dataset = reference.SpamDataset([(0, text) for text in texts], tokenizer, max_length, pad_token_id)
        return torch.tensor(dataset.encoded_texts, dtype=torch.long)
    encoded = [tokenizer.encode(text)[:max_length] for text in texts]
    length = max_length if max_length is not None else max(len(ids) for ids in encoded)
    return torch.tensor([ids + [pad_token_id] * (length - len(ids)) for ids in encoded], dtype=torch.long)


texts = ["Free entry!", "Hi", "You won a prize, call now"]
with forbid_reference_impl():
    padded = pad_messages(texts, tokenizer)
expect_type(padded, torch.Tensor, "pad_messages(texts, tokenizer)")
expect_equal(padded.dtype, torch.long, "the dtype of pad_messages(texts, tokenizer)",
             hint="token ids are integers: torch.tensor(..., dtype=torch.long)")
expect_shape(padded, (3, 7), "pad_messages(texts, tokenizer)",
             hint="one row per text, as long as the longest encoded text (7 tokens)")
expect_equal(padded, torch.tensor([[11146, 5726, 0, 50256, 50256, 50256, 50256],
                                   [17250, 50256, 50256, 50256, 50256, 50256, 50256],
                                   [1639, 1839, 257, 11596, 11, 869, 783]]),
             "pad_messages(texts, tokenizer)", hint="each text's ids first, then pad_token_id up to the length")
with forbid_reference_impl():
    padded = pad_messages(texts, tokenizer, max_length=4)
expect_equal(padded, torch.tensor([[11146, 5726, 0, 50256], [17250, 50256, 50256, 50256], [1639, 1839, 257, 11596]]),
             "pad_messages(texts, tokenizer, max_length=4)",
             hint="cut each text's ids to its first max_length ids, then pad to max_length")
with forbid_reference_impl():
    padded = pad_messages(["Hi", "Free entry!"], tokenizer, max_length=5, pad_token_id=0)
expect_equal(padded, expected_padding(["Hi", "Free entry!"], 5, 0),
             "pad_messages(['Hi', 'Free entry!'], tokenizer, max_length=5, pad_token_id=0)",
             hint="pad with the pad_token_id argument, up to max_length even when every text is shorter")
expect_raises(ValueError, pad_messages, [], tokenizer, what="pad_messages([], tokenizer)",
              hint="there is nothing to pad")
expect_raises(ValueError, pad_messages, texts, tokenizer, max_length=0, what="pad_messages(texts, tokenizer, max_length=0)",
              hint="max_length must be at least 1")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
some_texts = [text for _, text in sms_rows[:20]]
for max_length in (None, 1, 16, 300):
    with forbid_reference_impl():
        padded = pad_messages(some_texts, tokenizer, max_length=max_length)
    expect_equal(padded, expected_padding(some_texts, max_length), f"pad_messages of 20 SMS with max_length={max_length}")
with forbid_reference_impl():
    padded = pad_messages(["Hi"], tokenizer)
expect_equal(padded, torch.tensor([[17250]]), "pad_messages(['Hi'], tokenizer)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): a classification head, and what to train
#
# A GPT's output head gives one logit per vocabulary entry (50,257 for GPT-2). A spam
# classifier needs one logit per class. Write `prepare_for_classification(model, num_classes=2)`,
# which changes a `GPTModel` **in place**, as the book does (section 6.5):
#
# 1. freeze every parameter of the model (`requires_grad = False`);
# 2. replace `model.out_head` with a new `nn.Linear(emb_dim, num_classes)` (with a bias;
#    `emb_dim` is the width of the model, e.g. `model.out_head.in_features`); a new layer
#    is trainable;
# 3. make the last transformer block (`model.trf_blocks[-1]`) and the final layer norm
#    (`model.final_norm`) trainable again: fine-tuning them too works better than the head alone;
# 4. return `model`;
# 5. raise a `ValueError` when `num_classes < 2`, before changing anything.
#
# Create the new head before any other random call, so that it gets the same random weights
# as the reference for the same seed. For `tiny_gpt()` (2 blocks, 16 wide), 3,298
# parameters are trainable afterwards: 3,232 in the last block, 32 in the final norm, and
# `16 * 2 + 2 = 34` in the head.

# %% nbgrader={"grade": false, "grade_id": "ex4_classifier_head_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prepare_for_classification(model, num_classes=2):
    ### BEGIN SOLUTION
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    for param in model.parameters():
        param.requires_grad = False
    model.out_head = nn.Linear(model.out_head.in_features, num_classes)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_classifier_head_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import classify as reference

model = tiny_gpt()
original = copy.deepcopy(model.state_dict())
torch.manual_seed(1)
with forbid_reference_impl(allowed=(GPTModel,)):
    result = prepare_for_classification(model)
expect_true(result is model, "prepare_for_classification(model) should change the model in place and return it")
expect_type(model.out_head, nn.Linear, "model.out_head")
expect_equal((model.out_head.in_features, model.out_head.out_features), (16, 2),
             "(in_features, out_features) of the new out_head", hint="nn.Linear(emb_dim, num_classes)")
expect_true(model.out_head.bias is not None, "the new out_head should have a bias: nn.Linear(emb_dim, num_classes)")
expected_trainable = {"final_norm.scale", "final_norm.shift", "out_head.bias", "out_head.weight"} | {
    name for name, _ in model.named_parameters() if name.startswith("trf_blocks.1.")}
trainable = {name for name, p in model.named_parameters() if p.requires_grad}
expect_true(not expected_trainable - trainable, f"these parameters should be trainable, but are frozen: "
            f"{sorted(expected_trainable - trainable)}; unfreeze model.trf_blocks[-1] and model.final_norm after "
            "freezing everything; the new head is trainable")
expect_true(not trainable - expected_trainable, f"these parameters should be frozen, but are trainable: "
            f"{sorted(trainable - expected_trainable)}; freeze every parameter first (requires_grad = False)")
expect_equal(count_trainable(model), 3298, "the number of trainable parameters of tiny_gpt() prepared for 2 classes",
             hint="the last block (3,232), the final norm (32) and the new head (34)")
expect_close(model.tok_emb.weight, original["tok_emb.weight"], "the token embedding after the preparation",
             hint="only replace out_head: the other weights stay as they are")
expected_model = tiny_gpt()
torch.manual_seed(1)
reference.prepare_for_classification(expected_model)
expect_close(model.out_head.weight, expected_model.out_head.weight, "the new head's weight (after torch.manual_seed(1))",
             hint="create the new nn.Linear before any other random call")
with forbid_reference_impl(allowed=(GPTModel,)):
    logits = model(torch.tensor([[1, 2, 3, 4]]))
expect_shape(logits, (1, 4, 2), "the logits of the classifier for 4 tokens", hint="one logit per class")
expect_raises(ValueError, prepare_for_classification, tiny_gpt(), 1, what="prepare_for_classification(model, 1)",
              hint="one class is no classification")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for changes, num_classes in [(dict(n_layers=3, emb_dim=24, n_heads=3, qkv_bias=True), 3), (dict(n_layers=1), 2)]:
    expected_model = tiny_gpt(**changes)
    torch.manual_seed(5)
    reference.prepare_for_classification(expected_model, num_classes)
    model = tiny_gpt(**changes)
    torch.manual_seed(5)
    with forbid_reference_impl(allowed=(GPTModel,)):
        prepare_for_classification(model, num_classes)
    expect_equal({name: p.requires_grad for name, p in model.named_parameters()},
                 {name: p.requires_grad for name, p in expected_model.named_parameters()},
                 f"which parameters are trainable, for {changes} and {num_classes} classes")
    x = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    with forbid_reference_impl(allowed=(GPTModel,)):
        logits = model(x)
    expect_close(logits, expected_model(x), f"the classifier's logits for {changes} and {num_classes} classes")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (2 points): predict before you train
#
# Answer three questions: each function returns your answer (replace its two lines with
# `return` and the answer).
#
# 1. `answer_positions_seeing_all()` (an `int`): a GPT reads a message of 6 tokens and gives
#    one output per position. Through its causal attention, how many of the 6 positions
#    have seen **all** 6 tokens?
# 2. `answer_read_position()` (an `int`): the message "Free entry!" is 3 tokens, padded with
#    `<|endoftext|>` to 8 tokens. At which position (counting from 0) is the output that
#    has seen the whole message and nothing but the message?
# 3. `answer_initial_loss()` (a `float`, 2 decimals are enough): the new 2-class head of
#    exercise 4 has small random weights, so the untrained classifier gives each class a
#    probability close to 1/2. What cross-entropy loss do you expect on balanced data,
#    before any training?

# %% nbgrader={"grade": false, "grade_id": "ex5_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def answer_positions_seeing_all():
    ### BEGIN SOLUTION
    return 1  # only the last one: position i attends to tokens 0..i
    ### END SOLUTION


def answer_read_position():
    ### BEGIN SOLUTION
    return 2  # the last real token; positions 3..7 are padding
    ### END SOLUTION


def answer_initial_loss():
    ### BEGIN SOLUTION
    return 0.69  # -ln(1/2) = ln 2
    ### END SOLUTION

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_predictions_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    positions = answer_positions_seeing_all()
    read_position = answer_read_position()
    initial_loss = answer_initial_loss()
expect_true(isinstance(positions, int) and 0 <= positions <= 6,
            f"answer_positions_seeing_all() should be an int from 0 to 6 (a number of positions), got {positions!r}")
expect_true(isinstance(read_position, int) and 0 <= read_position <= 7,
            f"answer_read_position() should be an int from 0 to 7 (a position of the 8 tokens), got {read_position!r}")
expect_true(isinstance(initial_loss, (int, float)) and not isinstance(initial_loss, bool) and 0 <= initial_loss < 10,
            f"answer_initial_loss() should be a number (a cross-entropy), got {initial_loss!r}")
print("Exercise 5: the answers have the right types (grading checks their values).")
### BEGIN HIDDEN TESTS
expect_equal(positions, 1, "answer_positions_seeing_all()")
expect_equal(read_position, 2, "answer_read_position()")
expect_true(abs(initial_loss - math.log(2)) <= 0.05, f"answer_initial_loss(): {initial_loss} is not about ln 2 = 0.693")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (3 points): accuracy on the last real token
#
# The book classifies a message by the output at the **last** position. With padding, the
# last position is often an `<|endoftext|>` token, and the model must learn to carry the
# message through the padding. Reading the output at the last *real* token is more direct.
# Write two functions:
#
# 1. `last_token_positions(input_ids, pad_token_id)`: `input_ids` has shape
#    `(batch, num_tokens)`; return a `torch.long` tensor of shape `(batch,)` with, for each
#    row, the position of its last token that is **not** `pad_token_id` (`num_tokens - 1`
#    for a row without padding). Raise a `ValueError` when a row holds padding only.
# 2. `classification_accuracy(model, input_ids, labels, pad_token_id=50256)`: put the model
#    in eval mode (`model.eval()`: no dropout), compute its logits `model(input_ids)`, of shape
#    `(batch, num_tokens, num_classes)` (under `torch.no_grad()`: no gradients are needed);
#    take each row's logits at its last real token, predict the class with the largest logit,
#    and return the share of predictions equal to `labels` (shape `(batch,)`) as a Python
#    `float` in `[0, 1]`.
#
# With `pad_token_id=0`, `last_token_positions(torch.tensor([[5, 8, 3, 0, 0], [2, 7, 0, 0, 0],
# [1, 2, 3, 4, 6]]), 0)` is `tensor([2, 1, 4])`. The checks use `TokenParityClassifier`
# (setup cell), which predicts the class `token_id % 2` at each position: on these rows it
# predicts 1, 1 and 0 at the last real tokens, so for `labels = torch.tensor([1, 1, 1])` the
# accuracy is `2 / 3`. (The last positions hold 0, 0 and 6: reading those would predict 0 three
# times, an accuracy of 0.)
#
# Hint: `torch.arange(batch)` and the positions index one logit vector per row:
# `logits[torch.arange(batch), positions]`.

# %% nbgrader={"grade": false, "grade_id": "ex6_accuracy_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def last_token_positions(input_ids, pad_token_id):
    ### BEGIN SOLUTION
    real = input_ids != pad_token_id
    if not bool(real.any(dim=1).all()):
        raise ValueError("a row of input_ids holds padding only: it has no last real token")
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return torch.where(real, positions, -1).max(dim=1).values
    ### END SOLUTION


def classification_accuracy(model, input_ids, labels, pad_token_id=50256):
    ### BEGIN SOLUTION
    model.eval()
    with torch.no_grad():
        logits = model(input_ids)
    last_logits = logits[torch.arange(input_ids.shape[0]), last_token_positions(input_ids, pad_token_id)]
    predictions = last_logits.argmax(dim=-1)
    return (predictions == labels).float().mean().item()
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_accuracy_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import classify as reference


def expected_last_positions(input_ids, pad_token_id):  # written out here, independent of reference_impl
    return torch.tensor([max(i for i, token in enumerate(row.tolist()) if token != pad_token_id) for row in input_ids])


def expected_accuracy(model, input_ids, labels, pad_token_id):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids)
    positions = expected_last_positions(input_ids, pad_token_id)
    predictions = torch.stack([logits[i, position].argmax() for i, position in enumerate(positions)])
    return (predictions == labels).sum().item() / len(labels)


ids = torch.tensor([[5, 8, 3, 0, 0], [2, 7, 0, 0, 0], [1, 2, 3, 4, 6]])
with forbid_reference_impl():
    positions = last_token_positions(ids, 0)
expect_type(positions, torch.Tensor, "last_token_positions(ids, 0)")
expect_equal(positions.dtype, torch.long, "the dtype of last_token_positions(ids, 0)",
             hint="positions are integers (torch.long)")
expect_equal(positions, torch.tensor([2, 1, 4]), "last_token_positions(ids, 0)",
             hint="the position of each row's last token that is not the pad id; num_tokens - 1 without padding")
ids_inner_pad = torch.tensor([[4, 9, 9, 3, 9], [9, 1, 9, 9, 9]])  # pad id 9 also before the last real token
positions = run_checked(last_token_positions, ids_inner_pad, 9, what="last_token_positions(ids_inner_pad, 9)",
                        hint="the pad id may also occur before a row's last real token")
expect_equal(positions, torch.tensor([3, 1]), "last_token_positions([[4, 9, 9, 3, 9], [9, 1, 9, 9, 9]], 9)",
             hint="the LAST position whose token is not the pad id, not the first pad position minus 1")
expect_raises(ValueError, last_token_positions, torch.tensor([[1, 2], [0, 0]]), 0,
              what="last_token_positions of a row of padding only", hint="such a row has no real token")
labels = torch.tensor([1, 1, 1])
parity = TokenParityClassifier().train()
with forbid_reference_impl():
    accuracy = classification_accuracy(parity, ids, labels, pad_token_id=0)
expect_type(accuracy, float, "classification_accuracy(...)")
expect_true(not parity.training, "classification_accuracy should put the model in eval mode: call model.eval()")
expect_close(torch.tensor(accuracy), torch.tensor(2 / 3), "classification_accuracy(parity, ids, labels, pad_token_id=0)",
             hint="predict from each row's logits at its last real token, then count the predictions equal to labels")
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(11)
ids = torch.randint(0, 49, (12, 8), generator=generator)
lengths = torch.randint(1, 9, (12,), generator=generator)
for row, length in zip(ids, lengths):
    row[length:] = 49
for pad_token_id in (49, 0):
    with forbid_reference_impl():
        positions = last_token_positions(ids, pad_token_id)
    expect_equal(positions, expected_last_positions(ids, pad_token_id), f"last_token_positions with pad id {pad_token_id}")
model = reference.prepare_for_classification(tiny_gpt(seed=3, drop_rate=0.5)).train()
with torch.no_grad():
    model.out_head.weight.mul_(20)  # confident predictions, whose argmax is stable
labels = torch.randint(0, 2, (12,), generator=generator)
expected = expected_accuracy(copy.deepcopy(model), ids, labels, 49)
with forbid_reference_impl(allowed=(GPTModel,)):
    accuracy = classification_accuracy(model, ids, labels, pad_token_id=49)
expect_close(torch.tensor(accuracy), torch.tensor(expected), "classification_accuracy of a tiny GPT classifier with dropout")
with forbid_reference_impl():
    accuracy = classification_accuracy(TokenParityClassifier(), ids, ids[torch.arange(12), expected_last_positions(ids, 49)] % 2, 49)
expect_close(torch.tensor(accuracy), torch.tensor(1.0), "classification_accuracy when every label is right")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (2 points): the LoRA layer
#
# Fine-tuning changes a weight matrix $W$ by some $\Delta W$. LoRA (appendix E) learns that
# change as the product of two thin matrices: $\Delta W = A B$, with $A$ of shape
# `(in_dim, rank)` and $B$ of shape `(rank, out_dim)`, so `rank * (in_dim + out_dim)`
# trainable numbers instead of `in_dim * out_dim`. Write the book's `LoRALayer`:
#
# * `__init__(in_dim, out_dim, rank, alpha)`: `self.A = nn.Parameter(torch.empty(in_dim, rank))`
#   initialised with `nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))` (as `nn.Linear`
#   initialises its weights), `self.B = nn.Parameter(torch.zeros(rank, out_dim))`, and
#   `self.alpha = alpha`. Raise a `ValueError` when `rank < 1`.
# * `forward(x)`: `alpha * (x @ A @ B)`, for `x` of shape `(..., in_dim)`.
#
# Because `B` starts at zero, the layer's output starts at zero: a model with LoRA added
# computes exactly what it computed before, until training changes `B`. Make `A` your
# first random call, so that it equals the reference's for the same seed.

# %% nbgrader={"grade": false, "grade_id": "ex7_lora_layer_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        ### BEGIN SOLUTION
        if rank < 1:
            raise ValueError(f"the LoRA rank must be a positive integer, got {rank}")
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.alpha * (x @ self.A @ self.B)
        ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_lora_layer_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import lora as reference

torch.manual_seed(123)
with forbid_reference_impl():
    layer = LoRALayer(6, 10, rank=2, alpha=4.0)
expect_own_implementation(layer, "your LoRALayer")
expect_equal({name: tuple(p.shape) for name, p in layer.named_parameters()}, {"A": (6, 2), "B": (2, 10)},
             "the parameters of LoRALayer(6, 10, rank=2, alpha=4.0) (name: shape)",
             hint="self.A of shape (in_dim, rank) and self.B of shape (rank, out_dim), both nn.Parameter")
expect_close(layer.B, torch.zeros(2, 10), "B at initialisation", hint="B = nn.Parameter(torch.zeros(rank, out_dim))")
torch.manual_seed(123)
expected_layer = reference.LoRALayer(6, 10, rank=2, alpha=4.0)
expect_close(layer.A, expected_layer.A, "A at initialisation (after torch.manual_seed(123))",
             hint="A = nn.Parameter(torch.empty(in_dim, rank)), then nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))")
x = torch.randn(3, 5, 6)
with forbid_reference_impl():
    out = layer(x)
expect_shape(out, (3, 5, 10), "LoRALayer(6, 10, ...)(x) for x of shape (3, 5, 6)", hint="x @ A @ B")
expect_close(out, torch.zeros(3, 5, 10), "the output at initialisation", hint="B starts at zero, so A @ B = 0")
with torch.no_grad():
    expected_layer.B.normal_()  # as if trained
with forbid_reference_impl():
    layer.load_state_dict(expected_layer.state_dict())
    out = layer(x)
expect_close(out, expected_layer(x), "the output with a nonzero B", atol=1e-5,
             hint="alpha * (x @ self.A @ self.B): did you multiply by alpha?")
expect_raises(ValueError, LoRALayer, 6, 10, rank=0, alpha=1.0, what="LoRALayer(6, 10, rank=0, alpha=1.0)",
              hint="the rank must be at least 1")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for in_dim, out_dim, rank, alpha in [(16, 48, 8, 16), (3, 2, 1, 0.5)]:
    torch.manual_seed(7)
    expected_layer = reference.LoRALayer(in_dim, out_dim, rank, alpha)
    torch.manual_seed(7)
    with forbid_reference_impl():
        layer = LoRALayer(in_dim, out_dim, rank, alpha)
    expect_close(layer.A, expected_layer.A, f"A of LoRALayer({in_dim}, {out_dim}, {rank}, {alpha})")
    with torch.no_grad():
        expected_layer.B.normal_()
    x = torch.randn(4, in_dim)
    with forbid_reference_impl():
        layer.load_state_dict(expected_layer.state_dict())
        out = layer(x)
    expect_close(out, expected_layer(x), f"LoRALayer({in_dim}, {out_dim}, {rank}, {alpha}) with a nonzero B", atol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (3 points): LoRA in every linear layer of a GPT
#
# LoRA wraps each linear layer: the layer's output plus its low-rank update. Write:
#
# 1. the `forward` method of `LinearWithLoRA` (its `__init__` is given, with the course's
#    `LoRALayer`, which you may use): `self.linear(x) + self.lora(x)`;
# 2. `replace_linear_with_lora(model, rank, alpha)`: replace, **in place**, every
#    `nn.Linear` inside `model`, however deeply nested, with a `LinearWithLoRA` that wraps
#    it; return `model`. Walk the children with `model.named_children()`: replace a child
#    that is an `nn.Linear` with `setattr(model, name, LinearWithLoRA(child, rank, alpha))`,
#    and call the function on every other child (recursion). Wrap the layers in the order
#    `named_children()` gives them, so that the new `A` matrices get the same random values
#    as the reference's for the same seed.
#
# The book's recipe freezes the model, then adds LoRA: only the new `A` and `B` matrices are
# trainable. In `tiny_gpt()`, every block has 4 linear layers (the fused query-key-value
# projection `att.qkv`, `att.out_proj`, and the two of the feed-forward module); with the
# output head that makes 9. With `rank=4`: `4 * (16 + 48) + 4 * (16 + 16) + 4 * (16 + 64)`
# `+ 4 * (64 + 16) = 1,024` trainable parameters per block, and `4 * (16 + 50) = 264` in the
# head, **2,312** in all. And before training, the model's outputs do not change.

# %% nbgrader={"grade": false, "grade_id": "ex8_lora_model_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class LinearWithLoRA(nn.Module):
    def __init__(self, linear, rank, alpha):
        super().__init__()
        self.linear = linear
        # Given: the course's LoRALayer.
        self.lora = reference_impl.lora.LoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.linear(x) + self.lora(x)
        ### END SOLUTION


def replace_linear_with_lora(model, rank, alpha):
    ### BEGIN SOLUTION
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)
    return model
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_lora_model_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import lora as reference

given = (reference.LoRALayer, GPTModel)
model = tiny_gpt().eval()
x = torch.tensor([[1, 5, 9, 2], [3, 3, 3, 3]])
with torch.no_grad():
    before = model(x)
for param in model.parameters():  # the book's recipe: freeze, then add LoRA
    param.requires_grad = False
torch.manual_seed(1)
with forbid_reference_impl(allowed=given):
    result = replace_linear_with_lora(model, rank=4, alpha=8)
expect_true(result is model, "replace_linear_with_lora(model, ...) should change the model in place and return it")
wrapped = sorted(name for name, module in model.named_modules() if type(module) is LinearWithLoRA)
expect_equal(wrapped, sorted(["out_head"] + [f"trf_blocks.{i}.{layer}" for i in range(2) for layer in
                                             ("att.qkv", "att.out_proj", "ff.layers.0", "ff.layers.2")]),
             "the layers wrapped in your LinearWithLoRA",
             hint="recurse into every child that is not an nn.Linear, and replace each nn.Linear child")
bare = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and not name.endswith(".linear")]
expect_equal(bare, [], "the nn.Linear layers left without LoRA", hint="every nn.Linear must be wrapped")
expect_equal(count_trainable(model), 2312, "the number of trainable parameters after freezing, then adding LoRA (rank 4)",
             hint="only the LoRA matrices A and B are trainable; the wrapped nn.Linear keeps its frozen weights")
with forbid_reference_impl(allowed=given), torch.no_grad():
    after = model(x)
expect_close(after, before, "the model's logits after adding LoRA (B = 0)", atol=1e-6,
             hint="LinearWithLoRA.forward is self.linear(x) + self.lora(x)")
expected_model = tiny_gpt().eval()
for param in expected_model.parameters():
    param.requires_grad = False
torch.manual_seed(1)
reference.replace_linear_with_lora(expected_model, rank=4, alpha=8)
expect_equal(sorted(model.state_dict()), sorted(expected_model.state_dict()), "the names in the model's state dict",
             hint="keep the wrapped layer as self.linear: names such as trf_blocks.0.att.qkv.linear.weight")
expect_close(model.out_head.lora.A, expected_model.out_head.lora.A, "the A matrix of out_head's LoRA (after torch.manual_seed(1))",
             hint="wrap the children in the order model.named_children() gives them, depth first")
with torch.no_grad():  # as if trained: every B nonzero
    for module in expected_model.modules():
        if isinstance(module, reference.LoRALayer):
            module.B.normal_(std=0.1)
model.load_state_dict(expected_model.state_dict())
with forbid_reference_impl(allowed=given), torch.no_grad():
    after = model(x)
expect_close(after, expected_model(x), "the logits with nonzero B matrices", atol=1e-5,
             hint="each wrapped layer computes self.linear(x) + self.lora(x)")
print("Exercise 8: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
nested = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 5), nn.Sequential(nn.Linear(5, 2))))
expected_nested = copy.deepcopy(nested)
torch.manual_seed(9)
with forbid_reference_impl(allowed=given):
    replace_linear_with_lora(nested, rank=2, alpha=1.5)
torch.manual_seed(9)
reference.replace_linear_with_lora(expected_nested, rank=2, alpha=1.5)
expect_equal(sorted(name for name, module in nested.named_modules() if type(module) is LinearWithLoRA),
             ["0", "1.1", "1.2.0"], "the wrapped layers of a nested nn.Sequential")
with torch.no_grad():
    for module in expected_nested.modules():
        if isinstance(module, reference.LoRALayer):
            module.B.normal_()
nested.load_state_dict(expected_nested.state_dict())
x = torch.randn(6, 3)
with forbid_reference_impl(allowed=given), torch.no_grad():
    out = nested(x)
expect_close(out, expected_nested(x), "a nested nn.Sequential with LoRA", atol=1e-5)
model = tiny_gpt(n_layers=3, qkv_bias=True)
for param in model.parameters():
    param.requires_grad = False
with forbid_reference_impl(allowed=given):
    replace_linear_with_lora(model, rank=1, alpha=1)
expect_equal(count_trainable(model), 3 * (64 + 32 + 80 + 80) + 66, "trainable parameters of a 3-block GPT with rank 1")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
