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
# # Chapter 5 exercises: pretraining on unlabeled data
#
# These exercises make you write the code of chapter 5 and appendix D yourself: the loss that
# measures a generative model, the average loss over a data loader, one step of the training
# loop, temperature and top-k decoding, saving and loading checkpoints, loading OpenAI's GPT-2
# weights (here from a small random Hugging Face model, so no download is needed), and
# appendix D's learning-rate schedule and gradient clipping. Two exercises ask you to predict
# numbers before you compute them.
#
# The checks use the course's `GPTModel` of chapter 4 (from `reference_impl`, given in the setup
# cell) in tiny configurations with random weights: your code may call the model, and each check
# runs in about a second.
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
# | 1. Cross-entropy and perplexity | 1 |
# | 2. Predict the loss of an untrained model | 1 |
# | 3. The training/validation split and the loss over a data loader | 2 |
# | 4. One training step | 2 |
# | 5. Temperature scaling and top-k filtering | 2 |
# | 6. Predict what temperature and top-k do | 1 |
# | 7. Generating text by sampling | 3 |
# | 8. Saving and loading a checkpoint | 2 |
# | 9. Loading GPT-2's weights | 3 |
# | 10. Learning-rate warm-up and cosine decay | 2 |
# | 11. Gradient clipping | 1 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
import math
import pickle
import tempfile
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_tools.checks import (
    CheckFailed,
    expect_close,
    expect_equal,
    expect_shape,
    expect_true,
    expect_type,
    forbid_reference_impl,
    show_warnings_on_stdout,
)
from reference_impl.model import GPTConfig, GPTModel  # chapter 4's model: your code may call it

try:  # exercise 9 compares your weight loading with Hugging Face's GPT-2 (the course installs transformers)
    import transformers

    transformers.logging.set_verbosity_error()
except ImportError:
    transformers = None

show_warnings_on_stdout()
torch.set_printoptions(precision=4, sci_mode=False)
torch.set_num_threads(1)  # the models here are tiny: one thread is fastest, and never waits for a busy core
_ = torch.optim.AdamW([nn.Parameter(torch.zeros(1))])  # the optimizers' first use imports for seconds: do it now


def tiny_gpt(seed=123, **changes):
    """A small GPTModel with random weights and no dropout, the same for the same seed."""
    cfg = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)
    torch.manual_seed(seed)
    return GPTModel(cfg.replace(**changes))


def token_dataset(num_rows, num_tokens=6, vocab_size=50, seed=0):
    """Input-target pairs of random token ids: the targets are the inputs shifted by one token."""
    ids = torch.randint(0, vocab_size, (num_rows, num_tokens + 1), generator=torch.Generator().manual_seed(seed))
    return TensorDataset(ids[:, :-1], ids[:, 1:])


# The book's toy example of decoding (chapter 5, "Decoding strategies"): a vocabulary of nine
# words and the logits a model gives them as the next token after "every effort moves you".
vocab = {"closer": 0, "every": 1, "effort": 2, "forward": 3, "inches": 4, "moves": 5, "pizza": 6, "toward": 7, "you": 8}
inverse_vocab = {i: word for word, i in vocab.items()}


def book_next_token_logits():
    return torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])


print("tiny_gpt():", tiny_gpt().cfg)


# %% [markdown]
# ## Exercise 1 (1 point): cross-entropy and perplexity
#
# A language model is measured by how much probability it gives to the token that really comes
# next (chapter 5, "Evaluating generative text models"). Write
# `cross_entropy_and_perplexity(logits, targets)`:
#
# * `logits` has shape `(batch, num_tokens, vocab_size)`, `targets` (the ids of the next tokens)
#   has shape `(batch, num_tokens)`;
# * the **loss** is the mean, over all `batch * num_tokens` positions, of the negative log
#   probability of the target token: $-\frac{1}{N}\sum \log \mathrm{softmax}(\text{logits})[\text{target}]$;
# * the **perplexity** is `exp(loss)`: the number of equally likely tokens the model is, on
#   average, hesitating between;
# * return the pair `(loss, perplexity)`, both 0-dimensional float tensors.
#
# Write the formula yourself, not with `F.cross_entropy` or `F.nll_loss` (the chapter shows they
# give the same). It must stay finite for logits as large as 1000: `torch.softmax(...).log()`
# gives `log(0) = -inf` there, while `torch.log_softmax` computes the same values stably.
#
# Example: for `logits = torch.tensor([[[2.0, 1.0, 0.1, -1.0], [0.5, 2.5, -0.5, 0.0], [1.0, 1.0, 1.0, 1.0]]])`
# and `targets = torch.tensor([[0, 1, 3]])`, the loss is `tensor(0.6908)` and the perplexity
# `tensor(1.9953)`.
#
# Hint: `torch.gather(log_probs, -1, targets.unsqueeze(-1))`, or index with
# `log_probs[batch_index, token_index, targets]`.

# %% nbgrader={"grade": false, "grade_id": "ex1_cross_entropy_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cross_entropy_and_perplexity(logits, targets):
    ### BEGIN SOLUTION
    log_probs = torch.log_softmax(logits, dim=-1)  # stable: no log(0) for large logits
    target_log_probs = torch.gather(log_probs, -1, targets.unsqueeze(-1)).squeeze(-1)
    loss = -target_log_probs.mean()
    return loss, torch.exp(loss)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_cross_entropy_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
library_loss = CheckFailed("write the loss yourself (log_softmax, pick the targets, mean) "
                           "instead of calling F.cross_entropy or F.nll_loss")
no_cross_entropy = mock.patch.object(F, "cross_entropy", side_effect=library_loss)
no_nll_loss = mock.patch.object(F, "nll_loss", side_effect=library_loss)
logits = torch.tensor([[[2.0, 1.0, 0.1, -1.0], [0.5, 2.5, -0.5, 0.0], [1.0, 1.0, 1.0, 1.0]]])
targets = torch.tensor([[0, 1, 3]])
with forbid_reference_impl(), no_cross_entropy, no_nll_loss:
    result = cross_entropy_and_perplexity(logits, targets)
expect_type(result, tuple, "cross_entropy_and_perplexity(logits, targets)")
expect_equal(len(result), 2, "the number of results", hint="return the pair (loss, perplexity)")
loss, ppl = result
expect_shape(loss, (), "the loss", hint="one number for the whole batch: the mean over every position")
expect_close(loss, torch.tensor(0.6908), "the loss of the example", atol=1e-4,
             hint="the mean over all positions of -log softmax(logits)[target]; did you take the softmax "
                  "over the vocabulary (dim=-1) and negate the mean?")
expect_close(ppl, torch.tensor(1.9953), "the perplexity of the example", atol=1e-4, hint="torch.exp(loss)")
unlikely_targets = torch.tensor([[3, 2, 0]])  # tokens with probabilities near exp(-3000)
with forbid_reference_impl(), no_cross_entropy, no_nll_loss:
    large_loss, _ = cross_entropy_and_perplexity(logits * 1000, unlikely_targets)
expect_true(bool(torch.isfinite(large_loss)), "the loss for logits * 1000 and unlikely targets is not finite: "
            "torch.softmax(...).log() gives log(0) = -inf for tokens with a tiny probability; use torch.log_softmax")
expect_close(large_loss, F.cross_entropy((logits * 1000).flatten(0, 1), unlikely_targets.flatten()),
             "the loss for logits * 1000 and unlikely targets", rtol=1e-5, hint="use torch.log_softmax(logits, dim=-1)")
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(5)
for shape in [(2, 5, 50), (1, 1, 7), (3, 4, 50257)]:
    logits = 3 * torch.randn(*shape, generator=generator)
    targets = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    with forbid_reference_impl(), no_cross_entropy, no_nll_loss:
        loss, ppl = cross_entropy_and_perplexity(logits, targets)
    expect_close(loss, expected, f"the loss for logits of shape {shape}", atol=1e-5)
    expect_close(ppl, torch.exp(expected), f"the perplexity for logits of shape {shape}", rtol=1e-4)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): predict the loss of an untrained model
#
# Answer without running a model: think about what the numbers mean. Each answer is the number
# that a small function returns (replace its `raise NotImplementedError()` with `return ...`).
#
# 1. `answer_untrained_loss()`: a freshly initialised GPT-2 (124M) has small random weights, so
#    its logits are all close to 0. About what cross-entropy loss does it get on real text,
#    with GPT-2's vocabulary of 50,257 tokens? (A float, to 1 decimal place.)
# 2. `answer_uniform_perplexity()`: what is the perplexity of a model that gives every one of the
#    50,257 tokens the same probability? (A number.)
# 3. `answer_perplexity_at_loss_4()`: during training, the validation loss reaches 4.0. Between
#    about how many equally likely tokens is the model then hesitating? (A number, to the
#    nearest whole token.)
#
# The visible checks only check that the answers are numbers in a plausible range; grading checks
# the values. You may compute them (e.g. `return math.log(2)`).

# %% nbgrader={"grade": false, "grade_id": "ex2_untrained_loss_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def answer_untrained_loss():
    ### BEGIN SOLUTION
    return math.log(50257)  # logits near 0: uniform over the vocabulary, -log(1 / 50257), about 10.8
    ### END SOLUTION


def answer_uniform_perplexity():
    ### BEGIN SOLUTION
    return 50257  # exp(log(50257))
    ### END SOLUTION


def answer_perplexity_at_loss_4():
    ### BEGIN SOLUTION
    return math.exp(4.0)  # about 54.6
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_untrained_loss_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
def answers_of(*functions):
    """The numbers that the answer functions return; a CheckFailed unless each is a number."""
    values = []
    for function in functions:
        with forbid_reference_impl():
            value = function()
        expect_true(isinstance(value, (int, float)) and not isinstance(value, bool),
                    f"{function.__name__}() should return a number (an int or a float), got {type(value).__name__}")
        values.append(value)
    return values


untrained_loss, uniform_perplexity, perplexity_at_loss_4 = answers_of(
    answer_untrained_loss, answer_uniform_perplexity, answer_perplexity_at_loss_4)
expect_true(0 < untrained_loss < 100, f"answer_untrained_loss() = {untrained_loss} is not a plausible loss: a "
            "cross-entropy is positive, and for a random model it is a few units to tens")
expect_true(uniform_perplexity >= 1, f"answer_uniform_perplexity() = {uniform_perplexity}: a perplexity is "
            "exp(loss) with loss >= 0, so at least 1")
expect_true(perplexity_at_loss_4 >= 1, f"answer_perplexity_at_loss_4() = {perplexity_at_loss_4}: a perplexity "
            "is exp(loss) with loss >= 0, so at least 1")
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
expect_true(abs(untrained_loss - math.log(50257)) < 0.5,
            f"answer_untrained_loss() = {untrained_loss}: with logits near 0 every token gets about "
            "1 / 50257, so the loss is about -log(1 / 50257) = ln(50257)")
expect_true(abs(uniform_perplexity - 50257) <= 1, f"answer_uniform_perplexity() = {uniform_perplexity}")
expect_true(abs(perplexity_at_loss_4 - math.exp(4.0)) < 1,
            f"answer_perplexity_at_loss_4() = {perplexity_at_loss_4}: the perplexity is exp(loss)")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (2 points): the training/validation split and the loss over a data loader
#
# The chapter holds out the end of the text for validation and averages the loss over the
# batches of a data loader (chapter 5, "Training and validation data"). Write two functions:
#
# 1. `train_val_split(text, train_ratio=0.9)` returns `(train_text, val_text)`: the first
#    `int(train_ratio * len(text))` characters, and the rest. Raise a `ValueError` unless
#    `0 < train_ratio < 1`.
# 2. `calc_loss_loader(data_loader, model, device, num_batches=None)` returns the average loss
#    (a Python `float`):
#    * each batch is a pair `(input_batch, target_batch)` of token ids of shape
#      `(batch, num_tokens)`; move both to `device`, and compute the batch's loss as the mean
#      cross-entropy of `model(input_batch)` against `target_batch` (here you may use
#      `F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())`);
#    * average the losses of the first `num_batches` batches, each batch counting the same
#      (even a smaller last batch); all batches when `num_batches` is `None`, and all of them too
#      when `num_batches` is larger than `len(data_loader)`;
#    * an empty loader gives `float("nan")`, not an error (as in the book); `num_batches < 1`
#      raises a `ValueError`.
#
# Compute under `torch.no_grad()`: no gradients are needed to measure a loss.

# %% nbgrader={"grade": false, "grade_id": "ex3_loss_loader_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_val_split(text, train_ratio=0.9):
    ### BEGIN SOLUTION
    if not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio must be between 0 and 1 (exclusive), got {train_ratio}")
    split_idx = int(train_ratio * len(text))
    return text[:split_idx], text[split_idx:]
    ### END SOLUTION


def calc_loss_loader(data_loader, model, device, num_batches=None):
    ### BEGIN SOLUTION
    if len(data_loader) == 0:
        return float("nan")
    if num_batches is None:
        num_batches = len(data_loader)
    elif num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer or None, got {num_batches}")
    num_batches = min(num_batches, len(data_loader))
    total_loss = 0.0
    with torch.no_grad():
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if i >= num_batches:
                break
            input_batch, target_batch = input_batch.to(device), target_batch.to(device)
            logits = model(input_batch)
            total_loss += F.cross_entropy(logits.flatten(0, 1), target_batch.flatten()).item()
    return total_loss / num_batches
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_loss_loader_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import train as reference

text = "Every effort moves you forward."  # 31 characters
with forbid_reference_impl():
    split = train_val_split(text, train_ratio=0.8)
expect_equal(split, ("Every effort moves you f", "orward."), "train_val_split(text, train_ratio=0.8)",
             hint="split at int(train_ratio * len(text)) = 24 characters: (text[:24], text[24:])")
for bad_ratio in (0, 1, 1.5):
    try:
        with forbid_reference_impl():
            train_val_split(text, train_ratio=bad_ratio)
    except ValueError:
        pass
    else:
        raise CheckFailed(f"train_val_split(text, train_ratio={bad_ratio}) should raise a ValueError: "
                          "the ratio must be strictly between 0 and 1")
model = tiny_gpt().eval()
allowed = (GPTModel,)  # your code may call the model
grad_enabled = []  # whether gradients were on at each call of the model
watch = model.register_forward_hook(lambda module, args, output: grad_enabled.append(torch.is_grad_enabled()))
loader = DataLoader(token_dataset(10), batch_size=3, shuffle=False)  # batches of 3, 3, 3 and 1 rows
with forbid_reference_impl(allowed=allowed):
    loss = calc_loss_loader(loader, model, "cpu")
watch.remove()
expect_type(loss, float, "calc_loss_loader(loader, model, 'cpu')")
expect_true(grad_enabled and not any(grad_enabled), "calc_loss_loader ran the model with gradients on: "
            "wrap the loop in `with torch.no_grad():` (measuring a loss needs no gradients)")
expect_close(torch.tensor(loss), torch.tensor(reference.calc_loss_loader(loader, model, "cpu")),
             "calc_loss_loader(loader, model, 'cpu') over 4 batches (the last has 1 row)",
             hint="average the 4 batch losses, each batch counting the same (sum of batch losses / num_batches)")
with forbid_reference_impl(allowed=allowed):
    loss_2 = calc_loss_loader(loader, model, "cpu", num_batches=2)
    loss_9 = calc_loss_loader(loader, model, "cpu", num_batches=9)
expect_close(torch.tensor(loss_2), torch.tensor(reference.calc_loss_loader(loader, model, "cpu", num_batches=2)),
             "calc_loss_loader(..., num_batches=2)", hint="average only the first num_batches batches")
expect_close(torch.tensor(loss_9), torch.tensor(loss), "calc_loss_loader(..., num_batches=9) with 4 batches",
             hint="num_batches larger than len(data_loader): use all batches, min(num_batches, len(data_loader))")
empty = DataLoader(token_dataset(2), batch_size=3, drop_last=True)  # no batch at all
try:
    with forbid_reference_impl(allowed=allowed):
        loss_empty = calc_loss_loader(empty, model, "cpu")
except ZeroDivisionError as error:
    raise CheckFailed("calc_loss_loader of an empty loader divided by zero: return float('nan') when "
                      "len(data_loader) == 0") from error
expect_true(isinstance(loss_empty, float) and math.isnan(loss_empty),
            f"calc_loss_loader of an empty loader should be float('nan'), got {loss_empty!r}")
try:
    with forbid_reference_impl(allowed=allowed):
        calc_loss_loader(loader, model, "cpu", num_batches=0)
except ValueError:
    pass
else:
    raise CheckFailed("calc_loss_loader(..., num_batches=0) should raise a ValueError: num_batches must be >= 1")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
with forbid_reference_impl():
    expect_equal(train_val_split("abcdefghij"), ("abcdefghi", "j"), "train_val_split of 10 characters")
    expect_equal(train_val_split("abc", 0.5), ("a", "bc"), "train_val_split('abc', 0.5)")
model = tiny_gpt(seed=7, vocab_size=60).eval()
loader = DataLoader(token_dataset(13, num_tokens=8, vocab_size=60, seed=3), batch_size=4, shuffle=False)
for num_batches in (None, 1, 3, 4, 100):
    with forbid_reference_impl(allowed=allowed):
        loss = calc_loss_loader(loader, model, torch.device("cpu"), num_batches=num_batches)
    expected = reference.calc_loss_loader(loader, model, torch.device("cpu"), num_batches=num_batches)
    expect_close(torch.tensor(loss), torch.tensor(expected), f"calc_loss_loader with num_batches={num_batches}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): one training step
#
# The heart of the training loop (chapter 5, "Training the model") is one optimizer step.
# Write `train_step(model, optimizer, input_batch, target_batch)`:
#
# 1. reset the gradients of the previous step (`optimizer.zero_grad()`): PyTorch *adds* new
#    gradients to the old ones otherwise;
# 2. compute the loss of the batch: the mean cross-entropy of `model(input_batch)` against
#    `target_batch` (`F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())`);
# 3. compute the gradients (`loss.backward()`);
# 4. update the weights (`optimizer.step()`);
# 5. return the loss as a Python `float` (`loss.item()`).
#
# The checks run your step and the course's on two copies of the same model and compare the
# updated weights, which must be equal to float precision.

# %% nbgrader={"grade": false, "grade_id": "ex4_train_step_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_step(model, optimizer, input_batch, target_batch):
    ### BEGIN SOLUTION
    optimizer.zero_grad()  # forget the previous batch's gradients
    logits = model(input_batch)
    loss = F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_train_step_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import train as reference


def reference_step(model, optimizer, input_batch, target_batch):
    optimizer.zero_grad()
    loss = reference.calc_loss_batch(input_batch, target_batch, model, "cpu")
    loss.backward()
    optimizer.step()
    return loss.item()


def stale_gradients(model):  # gradients left over from an earlier batch
    for p in model.parameters():
        p.grad = torch.ones_like(p)


inputs, targets = token_dataset(4)[:]
model, expected_model = tiny_gpt(), tiny_gpt()
optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
expected_optimizer = torch.optim.AdamW(expected_model.parameters(), lr=4e-4, weight_decay=0.1)
stale_gradients(model)
stale_gradients(expected_model)
with forbid_reference_impl(allowed=(GPTModel,)):
    loss = train_step(model, optimizer, inputs, targets)
expected_loss = reference_step(expected_model, expected_optimizer, inputs, targets)
expect_true(isinstance(loss, float), f"train_step should return the loss as a Python float, got "
            f"{type(loss).__name__}: return loss.item()")
expect_close(torch.tensor(loss), torch.tensor(expected_loss), "the loss train_step returns",
             hint="the mean cross-entropy of model(input_batch) against target_batch, before the update")
expect_true(model.tok_emb.weight.grad is not None, "after train_step the parameters have no gradients: "
            "call loss.backward() before optimizer.step()")
expect_close(model.tok_emb.weight.grad, expected_model.tok_emb.weight.grad, "the gradients after train_step",
             hint="they include gradients of an earlier batch: call optimizer.zero_grad() first")
expect_true(not torch.equal(model.out_head.weight, tiny_gpt().out_head.weight),
            "train_step did not change the weights: call optimizer.step() after loss.backward()")
for (name, p), expected_p in zip(model.named_parameters(), expected_model.parameters()):
    expect_close(p, expected_p, f"the parameter {name} after one step",
                 hint="zero_grad, loss, backward, step: in that order, once")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
model, expected_model = tiny_gpt(seed=9, qkv_bias=True), tiny_gpt(seed=9, qkv_bias=True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
expected_optimizer = torch.optim.SGD(expected_model.parameters(), lr=0.1, momentum=0.9)
dataset = token_dataset(6, num_tokens=8, seed=11)
for step in range(3):
    inputs, targets = dataset[2 * step : 2 * step + 2]
    with forbid_reference_impl(allowed=(GPTModel,)):
        loss = train_step(model, optimizer, inputs, targets)
    expected_loss = reference_step(expected_model, expected_optimizer, inputs, targets)
    expect_close(torch.tensor(loss), torch.tensor(expected_loss), f"the loss of step {step + 1} (SGD with momentum)")
for (name, p), expected_p in zip(model.named_parameters(), expected_model.parameters()):
    expect_close(p, expected_p, f"the parameter {name} after three SGD steps", atol=1e-6)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (2 points): temperature scaling and top-k filtering
#
# Greedy decoding always picks the most likely token; sampling picks a token at random from the
# model's probabilities, shaped by two knobs (chapter 5, "Decoding strategies"). Write
# `next_token_probs(logits, temperature=1.0, top_k=None)`, which turns next-token `logits` of
# shape `(..., vocab_size)` into the probabilities that sampling uses (same shape):
#
# 1. **top-k**: if `top_k` is not `None`, every logit smaller than the `top_k`-th largest logit
#    (of its row) becomes `-torch.inf`, so its probability is exactly 0. Tokens tied with the
#    `top_k`-th largest are kept (compare with `<`, as the book does). A `top_k` at least as
#    large as the vocabulary keeps every token; `top_k < 1` raises a `ValueError`.
# 2. **temperature**: divide the logits by `temperature`, then take the softmax over the
#    vocabulary. Below 1 the distribution sharpens (towards greedy), above 1 it flattens.
#    `temperature <= 0` raises a `ValueError` (greedy decoding takes the argmax instead).
#
# For the book's example logits (`book_next_token_logits()`, in the setup cell),
# `next_token_probs(logits, temperature=1.0, top_k=3)` is
# `tensor([0.0615, 0.0000, 0.0000, 0.5775, 0.0000, 0.0000, 0.0000, 0.3610, 0.0000])`, and with
# `temperature=0.5` it is `tensor([0.0081, 0.0000, 0.0000, 0.7133, 0.0000, 0.0000, 0.0000, 0.2786, 0.0000])`.
#
# Hint: `torch.topk(logits, k, dim=-1)` returns the values in decreasing order: the last one,
# `values[..., -1:]`, is the threshold. `torch.where` or `masked_fill` replace the rest.

# %% nbgrader={"grade": false, "grade_id": "ex5_next_token_probs_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def next_token_probs(logits, temperature=1.0, top_k=None):
    ### BEGIN SOLUTION
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample (greedy decoding uses the argmax), got {temperature}")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
        logits = logits.masked_fill(logits < top_logits[..., -1:], -torch.inf)
    return torch.softmax(logits / temperature, dim=-1)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_next_token_probs_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
def expected_probs(logits, temperature, top_k=None):
    if top_k is not None:
        threshold = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = torch.where(logits < threshold, -torch.inf, logits)
    return torch.softmax(logits / temperature, dim=-1)


logits = book_next_token_logits()
with forbid_reference_impl():
    probs = next_token_probs(logits.clone())
expect_shape(probs, (9,), "next_token_probs(logits)", hint="one probability per vocabulary entry")
expect_close(probs, torch.softmax(logits, dim=-1), "next_token_probs(logits) (temperature 1, no top-k)",
             hint="without top_k and at temperature 1, it is the softmax of the logits over the last dimension")
with forbid_reference_impl():
    probs = next_token_probs(logits.clone(), temperature=1.0, top_k=3)
expect_true(bool((probs[[1, 2, 4, 5, 6, 8]] == 0).all()),
            f"next_token_probs(logits, top_k=3) gives {probs}: the 6 tokens outside the top 3 must have "
            "probability exactly 0; set their logits to -torch.inf before the softmax")
expect_close(probs, torch.tensor([0.0615, 0.0, 0.0, 0.5775, 0.0, 0.0, 0.0, 0.3610, 0.0]),
             "next_token_probs(logits, temperature=1.0, top_k=3)", atol=1e-4,
             hint="keep the logits >= the 3rd largest, then softmax: the kept probabilities sum to 1")
with forbid_reference_impl():
    probs = next_token_probs(logits.clone(), temperature=0.5, top_k=3)
expect_close(probs, expected_probs(logits, 0.5, 3), "next_token_probs(logits, temperature=0.5, top_k=3)",
             hint="divide the (filtered) logits by the temperature before the softmax")
batch = torch.stack([logits, 2 - logits.flip(0)])  # two rows: each row keeps its own top k
with forbid_reference_impl():
    probs = next_token_probs(batch.clone(), temperature=2.0, top_k=2)
expect_close(probs, expected_probs(batch, 2.0, 2), "next_token_probs of a batch of 2 rows, temperature=2.0, top_k=2",
             hint="filter each row with its own threshold: torch.topk(logits, k, dim=-1).values[..., -1:]")
ties = torch.tensor([1.0, 3.0, 3.0, 0.0])
with forbid_reference_impl():
    probs = next_token_probs(ties.clone(), top_k=1)
expect_close(probs, torch.tensor([0.0, 0.5, 0.5, 0.0]), "next_token_probs([1., 3., 3., 0.], top_k=1)",
             hint="keep every logit tied with the top_k-th largest: mask only logits < threshold")
try:
    with forbid_reference_impl():
        probs = next_token_probs(logits.clone(), top_k=50)
except RuntimeError as error:
    raise CheckFailed(f"next_token_probs(logits, top_k=50) for a vocabulary of 9 raised RuntimeError: {error}; "
                      "a top_k larger than the vocabulary keeps every token: use min(top_k, logits.shape[-1])") from error
expect_close(probs, torch.softmax(logits, dim=-1), "next_token_probs(logits, top_k=50) for a vocabulary of 9",
             hint="a top_k at least as large as the vocabulary keeps every token: use min(top_k, logits.shape[-1])")
for kwargs in ({"temperature": 0.0}, {"temperature": -1.0}, {"top_k": 0}):
    try:
        with forbid_reference_impl():
            next_token_probs(logits.clone(), **kwargs)
    except ValueError:
        pass
    else:
        raise CheckFailed(f"next_token_probs(logits, {', '.join(f'{k}={v}' for k, v in kwargs.items())}) should "
                          "raise a ValueError: the temperature must be > 0 and top_k >= 1")
print("Exercise 5: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
logits = 4 * torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(17))
for temperature, top_k in [(1.0, None), (0.1, 10), (5.0, 1), (1.4, 49), (0.7, 50)]:
    with forbid_reference_impl():
        probs = next_token_probs(logits.clone(), temperature=temperature, top_k=top_k)
    expect_close(probs, expected_probs(logits, temperature, top_k),
                 f"next_token_probs of (3, 5, 50) logits, temperature={temperature}, top_k={top_k}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (1 point): predict what temperature and top-k do
#
# Take the book's example logits again (`book_next_token_logits()`: the largest is "forward"
# with 6.75, then "toward" with 6.28 and "closer" with 4.51). Each function returns a
# probability, a number between 0 and 1, to 2 decimal places; think first, then check yourself
# with your `next_token_probs` if you like.
#
# 1. `answer_pizza_top3()`: with `top_k=3` and temperature 1, what is the probability of
#    sampling "pizza"?
# 2. `answer_toward_hot_top3()`: with `top_k=3` and a very high temperature (say 1000), what is
#    the probability of sampling "toward"?
# 3. `answer_forward_cold()`: without top-k, as the temperature approaches 0 (say 0.001), what
#    is the probability of sampling "forward"?

# %% nbgrader={"grade": false, "grade_id": "ex6_decoding_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def answer_pizza_top3():
    ### BEGIN SOLUTION
    return 0.0  # outside the top 3: its logit is -inf
    ### END SOLUTION


def answer_toward_hot_top3():
    ### BEGIN SOLUTION
    return 1 / 3  # a very high temperature flattens the 3 kept logits: uniform over them
    ### END SOLUTION


def answer_forward_cold():
    ### BEGIN SOLUTION
    return 1.0  # a temperature near 0 sharpens the softmax to the argmax: greedy decoding
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_decoding_predictions_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
answers = {}
for function in (answer_pizza_top3, answer_toward_hot_top3, answer_forward_cold):
    with forbid_reference_impl():
        value = function()
    expect_true(isinstance(value, (int, float)) and not isinstance(value, bool),
                f"{function.__name__}() should return a number (an int or a float), got {type(value).__name__}")
    expect_true(0 <= value <= 1, f"{function.__name__}() = {value} is not a probability: return a number "
                "between 0 and 1")
    answers[function.__name__] = value
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
expect_true(abs(answers["answer_pizza_top3"]) < 0.005, f"answer_pizza_top3() = {answers['answer_pizza_top3']}: "
            "top-k sets the logits outside the top 3 to -inf, and exp(-inf) = 0")
expect_true(abs(answers["answer_toward_hot_top3"] - 1 / 3) < 0.01,
            f"answer_toward_hot_top3() = {answers['answer_toward_hot_top3']}: logits / 1000 are all almost 0, "
            "so the 3 kept tokens become equally likely")
expect_true(abs(answers["answer_forward_cold"] - 1) < 0.011, f"answer_forward_cold() = "
            f"{answers['answer_forward_cold']}: dividing by a tiny temperature makes the largest logit dominate")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (3 points): generating text by sampling
#
# Write the chapter's `generate(model, idx, max_new_tokens, context_size, temperature=0.0,
# top_k=None, generator=None)` (chapter 5, "Decoding strategies"; without its `eos_id`), which
# extends a batch of token ids `idx`, of shape `(batch, num_tokens)`, by `max_new_tokens` tokens,
# one at a time. At each step:
#
# 1. crop the sequence to its last `context_size` tokens and run the model on it under
#    `torch.no_grad()`; keep the logits of the last position, shape `(batch, vocab_size)`;
# 2. if `top_k` is not `None`, set every logit smaller than the `top_k`-th largest of its row
#    to `-torch.inf` (as in exercise 5: copy your code here if you like);
# 3. if `temperature > 0`: divide the logits by `temperature`, take `torch.softmax`, and draw
#    one token per row with `torch.multinomial(probs, num_samples=1, generator=generator)`;
#    otherwise (`temperature == 0`) pick the most likely token, `torch.argmax(logits, dim=-1,
#    keepdim=True)`: greedy decoding, as in chapter 4;
# 4. append the new tokens with `torch.cat(..., dim=1)`.
#
# Return the prompt followed by the new tokens, shape `(batch, num_tokens + max_new_tokens)`.
#
# Passing the random-number `generator` to `torch.multinomial` makes the sampling reproducible:
# the same seed gives the same tokens, whatever else used PyTorch's global random numbers. The
# checks compare your tokens with the course's `generate` on the same seed, so draw exactly one
# `torch.multinomial` per step, with the probabilities of `torch.softmax`.

# %% nbgrader={"grade": false, "grade_id": "ex7_generate_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, generator=None):
    ### BEGIN SOLUTION
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]  # the last position predicts the next token
        if top_k is not None:
            top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
            logits = logits.masked_fill(logits < top_logits[:, -1:], -torch.inf)
        if temperature > 0.0:
            probs = torch.softmax(logits / temperature, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_generate_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import generate as reference


def expected_tokens(model, prompt, max_new_tokens, context_size, temperature, top_k, seed):
    torch.manual_seed(seed)  # the course's generate samples with the global generator
    return reference.generate(model, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                              use_cache=False, context_size=context_size)


model = tiny_gpt(context_length=16).eval()
prompt = torch.tensor([[7, 3, 11, 2, 40], [1, 1, 1, 1, 1]])
grad_enabled = []  # whether gradients were on at each call of the model
watch = model.register_forward_hook(lambda module, args, output: grad_enabled.append(torch.is_grad_enabled()))
with forbid_reference_impl(allowed=(GPTModel,)):
    greedy = generate(model, prompt, max_new_tokens=6, context_size=4)
watch.remove()
expect_true(grad_enabled and not any(grad_enabled), "generate ran the model with gradients on: "
            "call it under `with torch.no_grad():` (generating needs no gradients)")
expect_shape(greedy, (2, 11), "generate(model, prompt, max_new_tokens=6, context_size=4) for a (2, 5) prompt",
             hint="return the prompt followed by the max_new_tokens new tokens")
expect_equal(greedy[:, :5], prompt, "the first 5 tokens of the output", hint="start from the whole prompt")
expect_equal(greedy, reference.generate_text_simple(model, prompt, 6, 4), "generate(..., temperature=0.0)",
             hint="temperature 0 is greedy: the argmax of the last position's logits, after cropping to "
                  "the last context_size tokens (idx[:, -context_size:])")
torch.manual_seed(999)  # the global generator is elsewhere: only `generator` may decide the samples
with forbid_reference_impl(allowed=(GPTModel,)):
    sampled = generate(model, prompt, 8, context_size=16, temperature=1.5, generator=torch.Generator().manual_seed(123))
    again = generate(model, prompt, 8, context_size=16, temperature=1.5, generator=torch.Generator().manual_seed(123))
expect_equal(again, sampled, "two runs with generators seeded alike", hint="pass generator=generator to "
             "torch.multinomial, so that the seed (not the global random state) decides the samples")
expect_true(not torch.equal(sampled, reference.generate_text_simple(model, prompt, 8, 16)),
            "generate(..., temperature=1.5) gives the greedy tokens: sample with torch.multinomial when temperature > 0")
expect_equal(sampled, expected_tokens(model, prompt, 8, 16, 1.5, None, seed=123),
             "generate(model, prompt, 8, context_size=16, temperature=1.5, generator=seeded 123)",
             hint="probs = torch.softmax(logits / temperature, dim=-1), then one "
                  "torch.multinomial(probs, num_samples=1, generator=generator) per step")
with forbid_reference_impl(allowed=(GPTModel,)):
    sampled = generate(model, prompt, 8, context_size=16, temperature=1.5, top_k=3,
                       generator=torch.Generator().manual_seed(5))
expect_equal(sampled, expected_tokens(model, prompt, 8, 16, 1.5, 3, seed=5),
             "generate(model, prompt, 8, context_size=16, temperature=1.5, top_k=3, generator=seeded 5)",
             hint="before the temperature, set the logits below the top_k-th largest of each row to -torch.inf")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(7)
for prompt, max_new_tokens, context_size, temperature, top_k, seed in [
    (torch.randint(0, 50, (3, 6), generator=generator), 14, 16, 0.7, 10, 1),  # grows past the context length
    (torch.randint(0, 50, (2, 20), generator=generator), 3, 16, 2.0, None, 2),  # a prompt longer than the context
    (torch.tensor([[42]]), 5, 3, 1.0, 1, 3),  # top_k=1 is greedy
    (torch.tensor([[42]]), 5, 3, 0.0, 5, 3),  # greedy with top-k
    (torch.tensor([[3, 4, 5]]), 0, 16, 1.0, None, 4),  # nothing to generate
]:
    with forbid_reference_impl(allowed=(GPTModel,)):
        out = generate(model, prompt.clone(), max_new_tokens, context_size, temperature=temperature, top_k=top_k,
                       generator=torch.Generator().manual_seed(seed))
    expected = expected_tokens(model, prompt, max_new_tokens, context_size, temperature, top_k, seed)
    expect_equal(out, expected, f"generate for a prompt of shape {tuple(prompt.shape)}, "
                 f"max_new_tokens={max_new_tokens}, context_size={context_size}, temperature={temperature}, "
                 f"top_k={top_k}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (2 points): saving and loading a checkpoint
#
# Training takes long: save the model, and the optimizer too, so that training can continue
# later where it stopped (chapter 5, "Saving and loading weights"). AdamW keeps two running
# averages per weight, and without them a resumed training starts its moments from zero again.
# Write:
#
# 1. `save_checkpoint(path, model, optimizer)`: save, with `torch.save`, a dictionary with the
#    book's two keys, `"model_state_dict"` (`model.state_dict()`) and `"optimizer_state_dict"`
#    (`optimizer.state_dict()`), to the file `path`;
# 2. `load_checkpoint(path, model, optimizer)`: read the file with
#    `torch.load(path, map_location="cpu", weights_only=True)` and load the two states into
#    `model` and `optimizer` (their `load_state_dict` methods). `map_location="cpu"` lets a file
#    saved on a GPU load on any machine; `weights_only=True` is required.
#
# `weights_only=True` matters: a checkpoint is a pickle, and unpickling a file from the internet
# can run any code in it; with `weights_only=True`, PyTorch only accepts tensors and plain
# values. The checks watch that your `load_checkpoint` passes it.

# %% nbgrader={"grade": false, "grade_id": "ex8_checkpoint_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def save_checkpoint(path, model, optimizer):
    ### BEGIN SOLUTION
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    ### END SOLUTION


def load_checkpoint(path, model, optimizer):
    ### BEGIN SOLUTION
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_checkpoint_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import train as reference

# GPTModel's load_state_dict runs this hook of the course's (it accepts the book's attention layout).
model_hook = "reference_impl.attention._load_book_layout"


def trained_a_little(seed):  # a model and an AdamW with state: two steps on random batches
    model = tiny_gpt(seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    for inputs, targets in DataLoader(token_dataset(4, seed=seed), batch_size=2):
        optimizer.zero_grad()
        reference.calc_loss_batch(inputs, targets, model, "cpu").backward()
        optimizer.step()
    return model, optimizer


def expect_same_state(model, optimizer, expected_model, expected_optimizer, what):
    for (name, p), expected_p in zip(model.state_dict().items(), expected_model.state_dict().values()):
        expect_close(p, expected_p, f"{name} of the model {what}", atol=0, rtol=0,
                     hint="load the model's state dict: model.load_state_dict(checkpoint['model_state_dict'])")
    state, expected_state = optimizer.state_dict()["state"], expected_optimizer.state_dict()["state"]
    expect_equal(sorted(state), sorted(expected_state), f"the parameters with optimizer state {what}",
                 hint="load the optimizer's state dict too: optimizer.load_state_dict(...)")
    for i in expected_state:
        for key in ("exp_avg", "exp_avg_sq"):
            expect_close(state[i][key], expected_state[i][key], f"the optimizer's {key} of parameter {i} {what}",
                         atol=0, rtol=0, hint="save and load the optimizer's state dict as well: "
                         "optimizer.load_state_dict(checkpoint['optimizer_state_dict'])")


model, optimizer = trained_a_little(seed=1)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "checkpoint.pth"
    with forbid_reference_impl(allowed=model_hook):
        save_checkpoint(path, model, optimizer)
    expect_true(path.is_file(), "save_checkpoint(path, model, optimizer) wrote no file at path: torch.save(..., path)")
    try:
        saved = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckFailed("the checkpoint file holds more than tensors and plain values, so torch.load(..., "
                          "weights_only=True) refuses it: save the state dicts (model.state_dict(), "
                          "optimizer.state_dict()), not the model or optimizer objects") from error
    expect_type(saved, dict, "the object in the checkpoint file")
    expect_equal(sorted(saved), ["model_state_dict", "optimizer_state_dict"], "the keys of the saved dictionary",
                 hint='save {"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}')
    restored_model, restored_optimizer = trained_a_little(seed=2)  # other weights, other optimizer state
    with forbid_reference_impl(allowed=model_hook), mock.patch.object(torch, "load", wraps=torch.load) as spy:
        load_checkpoint(path, restored_model, restored_optimizer)
expect_true(spy.called, "load_checkpoint did not call torch.load(path, map_location='cpu', weights_only=True)")
expect_true(spy.call_args.kwargs.get("weights_only") is True,
            "load_checkpoint called torch.load without weights_only=True: pass it, so that loading "
            "a file cannot run code")
expect_same_state(restored_model, restored_optimizer, model, optimizer, "after load_checkpoint")
print("Exercise 8: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
# The course's loader reads your file, and yours reads the course's (which has an extra key).
model, optimizer = trained_a_little(seed=3)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "model_and_optimizer.pth"
    with forbid_reference_impl(allowed=model_hook):
        save_checkpoint(str(path), model, optimizer)
    other_model, other_optimizer = trained_a_little(seed=4)
    reference.load_checkpoint(path, other_model, other_optimizer)
    expect_same_state(other_model, other_optimizer, model, optimizer, "loaded by the course's load_checkpoint")
    reference.save_checkpoint(path, model, optimizer, epoch=3)
    other_model, other_optimizer = trained_a_little(seed=5)
    with forbid_reference_impl(allowed=model_hook):
        load_checkpoint(str(path), other_model, other_optimizer)
    expect_same_state(other_model, other_optimizer, model, optimizer, "from the course's save_checkpoint")
# Training resumes exactly: one more step on the original and on the restored copy.
inputs, targets = token_dataset(2, seed=6)[:]
for m, opt in ((model, optimizer), (other_model, other_optimizer)):
    opt.zero_grad()
    reference.calc_loss_batch(inputs, targets, m, "cpu").backward()
    opt.step()
expect_same_state(other_model, other_optimizer, model, optimizer, "after one more training step")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 9 (3 points): loading GPT-2's weights
#
# OpenAI's pretrained GPT-2 weights are published in the Hugging Face layout (chapter 5,
# "Loading OpenAI's GPT-2 weights"). Its names differ from the book's `GPTModel`, and its
# linear layers are `Conv1D` layers, whose weights are stored transposed: `(in_features,
# out_features)`, where `nn.Linear` holds `(out_features, in_features)`. Write
# `gpt2_to_book_state_dict(hf_state_dict, n_layers)`, which returns a new dictionary with the
# book's names, ready for `model.load_state_dict(..., strict=True)`.
#
# `hf_state_dict` is the state dict of a `transformers.GPT2LMHeadModel`: every name starts with
# `"transformer."`, and `"lm_head.weight"` (the output head, a copy of the token embedding) may be
# there too. With `h.{i}` the block `i` of the Hugging Face model and `trf_blocks.{i}` ours:
#
# | Hugging Face (`transformer.` + ...) | the book's `GPTModel` |
# |---|---|
# | `wte.weight`, `wpe.weight` | `tok_emb.weight`, `pos_emb.weight` |
# | `h.{i}.ln_1.weight`, `h.{i}.ln_1.bias` | `trf_blocks.{i}.norm1.scale`, `trf_blocks.{i}.norm1.shift` |
# | `h.{i}.attn.c_attn.weight` (split in 3, transpose each part) | `trf_blocks.{i}.att.W_query.weight`, `...W_key.weight`, `...W_value.weight` |
# | `h.{i}.attn.c_attn.bias` (split in 3) | `trf_blocks.{i}.att.W_query.bias`, `...W_key.bias`, `...W_value.bias` |
# | `h.{i}.attn.c_proj.weight` (transpose), `.bias` | `trf_blocks.{i}.att.out_proj.weight`, `.bias` |
# | `h.{i}.ln_2.weight`, `h.{i}.ln_2.bias` | `trf_blocks.{i}.norm2.scale`, `trf_blocks.{i}.norm2.shift` |
# | `h.{i}.mlp.c_fc.weight` (transpose), `.bias` | `trf_blocks.{i}.ff.layers.0.weight`, `.bias` |
# | `h.{i}.mlp.c_proj.weight` (transpose), `.bias` | `trf_blocks.{i}.ff.layers.2.weight`, `.bias` |
# | `ln_f.weight`, `ln_f.bias` | `final_norm.scale`, `final_norm.shift` |
# | `wte.weight` (again: GPT-2 ties the head to the token embedding) | `out_head.weight` |
#
# `c_attn` computes the queries, keys and values at once: its `3 * emb_dim` output columns are
# the queries', then the keys', then the values' (`torch.split(w, emb_dim, dim=-1)` or
# `.chunk(3, dim=-1)`). Return exactly the names of the right column, nothing else.
#
# The checks build a small GPT-2 with random weights (`transformers`), load your dictionary into
# the course's `GPTModel` and compare its logits with Hugging Face's.

# %% nbgrader={"grade": false, "grade_id": "ex9_gpt2_weights_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gpt2_to_book_state_dict(hf_state_dict, n_layers):
    ### BEGIN SOLUTION
    hf = {name.removeprefix("transformer."): tensor for name, tensor in hf_state_dict.items()}
    ours = {
        "tok_emb.weight": hf["wte.weight"],
        "pos_emb.weight": hf["wpe.weight"],
        "final_norm.scale": hf["ln_f.weight"],
        "final_norm.shift": hf["ln_f.bias"],
        "out_head.weight": hf["wte.weight"],  # tied to the token embedding
    }
    for i in range(n_layers):
        h, b = f"h.{i}.", f"trf_blocks.{i}."
        q_w, k_w, v_w = hf[h + "attn.c_attn.weight"].chunk(3, dim=-1)  # Conv1D: (in, out) columns q;k;v
        q_b, k_b, v_b = hf[h + "attn.c_attn.bias"].chunk(3, dim=-1)
        for part, weight, bias in (("W_query", q_w, q_b), ("W_key", k_w, k_b), ("W_value", v_w, v_b)):
            ours[f"{b}att.{part}.weight"] = weight.T
            ours[f"{b}att.{part}.bias"] = bias
        for hf_name, our_name in (("attn.c_proj", "att.out_proj"), ("mlp.c_fc", "ff.layers.0"),
                                  ("mlp.c_proj", "ff.layers.2")):
            ours[f"{b}{our_name}.weight"] = hf[f"{h}{hf_name}.weight"].T
            ours[f"{b}{our_name}.bias"] = hf[f"{h}{hf_name}.bias"]
        for hf_name, our_name in (("ln_1", "norm1"), ("ln_2", "norm2")):
            ours[f"{b}{our_name}.scale"] = hf[f"{h}{hf_name}.weight"]
            ours[f"{b}{our_name}.shift"] = hf[f"{h}{hf_name}.bias"]
    return ours
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex9_gpt2_weights_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 9: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
if transformers is None:
    raise CheckFailed("these checks need the transformers package, which the course installs: "
                      "run `pip install -r requirements.txt` in the course's environment")


def random_hf_gpt2(n_layers, emb_dim, n_heads, vocab_size=50, context_length=8, seed=123):
    """A small GPT2LMHeadModel with every tensor random, so that a swapped or untransposed tensor shows."""
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=context_length, n_embd=emb_dim,
                                     n_layer=n_layers, n_head=n_heads, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in hf_model.parameters():
            p.normal_(0.0, 0.3)
    return hf_model


def book_names(n_layers):
    names = ["tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift", "out_head.weight"]
    for i in range(n_layers):
        names += [f"trf_blocks.{i}.att.{part}.{kind}" for part in ("W_query", "W_key", "W_value", "out_proj")
                  for kind in ("weight", "bias")]
        names += [f"trf_blocks.{i}.ff.layers.{j}.{kind}" for j in (0, 2) for kind in ("weight", "bias")]
        names += [f"trf_blocks.{i}.{norm}.{kind}" for norm in ("norm1", "norm2") for kind in ("scale", "shift")]
    return sorted(names)


def load_and_compare(hf_model, what):
    hf_cfg = hf_model.config
    with forbid_reference_impl():
        ours = gpt2_to_book_state_dict(hf_model.state_dict(), hf_cfg.n_layer)
    expect_type(ours, dict, f"gpt2_to_book_state_dict for {what}")
    expect_equal(sorted(ours), book_names(hf_cfg.n_layer), f"the sorted names gpt2_to_book_state_dict returns for {what}",
                 hint="exactly the names of the table's right column, for every block i in range(n_layers)")
    cfg = GPTConfig(vocab_size=hf_cfg.vocab_size, context_length=hf_cfg.n_positions, emb_dim=hf_cfg.n_embd,
                    n_heads=hf_cfg.n_head, n_layers=hf_cfg.n_layer, drop_rate=0.0, qkv_bias=True)
    model = GPTModel(cfg).eval()
    expected_shapes = {**{name: tuple(p.shape) for name, p in model.state_dict().items() if ".att.qkv." not in name},
                       **{f"{name[: -len('qkv.weight')]}{part}.weight": (cfg.emb_dim, cfg.emb_dim)
                          for name in model.state_dict() if name.endswith("qkv.weight")
                          for part in ("W_query", "W_key", "W_value")},
                       **{f"{name[: -len('qkv.bias')]}{part}.bias": (cfg.emb_dim,)
                          for name in model.state_dict() if name.endswith("qkv.bias")
                          for part in ("W_query", "W_key", "W_value")}}
    for name, tensor in ours.items():
        expect_shape(tensor, expected_shapes[name], f"{name} for {what}",
                     hint="Conv1D weights are (in, out): transpose them (.T) for nn.Linear's (out, in); "
                          "split c_attn into 3 equal parts along its output columns")
    model.load_state_dict(ours, strict=True)
    ids = torch.randint(0, hf_cfg.vocab_size, (2, hf_cfg.n_positions), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf_model(ids).logits
        logits = model(ids)
    expect_close(logits, expected, f"the logits of GPTModel with your weights, for {what}", atol=1e-4, rtol=1e-4,
                 hint="compare with the table: ln_1 -> norm1 and ln_2 -> norm2; transpose every Conv1D weight, "
                      "also the square c_proj of the attention; c_attn's columns are query, key, value in that order")


load_and_compare(random_hf_gpt2(n_layers=1, emb_dim=16, n_heads=2), "a 1-block GPT-2 (emb_dim 16)")
print("Exercise 9: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
load_and_compare(random_hf_gpt2(n_layers=3, emb_dim=24, n_heads=4, vocab_size=70, context_length=6, seed=9),
                 "a 3-block GPT-2 (emb_dim 24, 4 heads)")
hf_model = random_hf_gpt2(n_layers=2, emb_dim=16, n_heads=2, seed=4)
without_head = {name: t for name, t in hf_model.state_dict().items() if name != "lm_head.weight"}
with forbid_reference_impl():
    ours = gpt2_to_book_state_dict(without_head, 2)
expect_equal(sorted(ours), book_names(2), "the names for a state dict without lm_head.weight",
             hint="out_head.weight comes from wte.weight: GPT-2's head is tied to the token embedding")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 10 (2 points): learning-rate warm-up and cosine decay
#
# Appendix D trains with a learning rate that changes at every optimizer step. Write
# `learning_rate_at(step, total_steps, peak_lr, warmup_steps, initial_lr, min_lr)`, the rate of
# the (0-based) `step` out of `total_steps`, as a Python `float`:
#
# * **linear warm-up**, for `step < warmup_steps`: start at `initial_lr` (step 0) and add
#   `(peak_lr - initial_lr) / warmup_steps` per step, so that step `warmup_steps` would reach
#   `peak_lr`. Large, noisy updates at the start could wreck the random weights;
# * **cosine decay** afterwards: with `progress = (step - warmup_steps) / (total_steps - warmup_steps)`,
#   the rate is `min_lr + (peak_lr - min_lr) * 0.5 * (1 + cos(pi * progress))`: `peak_lr` at
#   `step == warmup_steps`, falling along half a cosine to `min_lr` at `step == total_steps`;
# * for `step > total_steps` it stays at `min_lr` (cap `progress` at 1);
# * raise a `ValueError` if `step < 0` or if `warmup_steps >= total_steps` (no steps left to decay).
#
# `warmup_steps` may be 0 (no warm-up: `initial_lr` is then unused). With `total_steps=10,
# peak_lr=1e-3, warmup_steps=2, initial_lr=1e-4, min_lr=1e-5`, steps 0 to 10 give
# `[0.0001, 0.00055, 0.001, 0.00096232, 0.00085502, 0.00069443, 0.000505, 0.00031557, 0.00015498, 4.768e-05, 1e-05]`.

# %% nbgrader={"grade": false, "grade_id": "ex10_learning_rate_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def learning_rate_at(step, total_steps, peak_lr, warmup_steps, initial_lr, min_lr):
    ### BEGIN SOLUTION
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be smaller than total_steps ({total_steps})")
    if step < warmup_steps:
        return initial_lr + step * (peak_lr - initial_lr) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex10_learning_rate_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 10: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import train as reference


def expected_schedule(steps, total_steps, peak_lr, warmup_steps, initial_lr, min_lr):
    return torch.tensor([reference.learning_rate_at(step, total_steps, peak_lr=peak_lr, warmup_steps=warmup_steps,
                                                    initial_lr=initial_lr if warmup_steps else None, min_lr=min_lr,
                                                    cosine_decay=True) for step in steps], dtype=torch.float64)


def schedule(steps, *args):
    with forbid_reference_impl():
        rates = [learning_rate_at(step, *args) for step in steps]
    for rate in rates:
        expect_type(rate, float, "learning_rate_at(...)")
    return torch.tensor(rates, dtype=torch.float64)


example = (10, 1e-3, 2, 1e-4, 1e-5)  # total_steps, peak_lr, warmup_steps, initial_lr, min_lr
rates = schedule(range(2), *example)
expect_close(rates, expected_schedule(range(2), *example), "learning_rate_at for the warm-up steps 0 and 1",
             atol=1e-12, rtol=1e-9, hint="initial_lr + step * (peak_lr - initial_lr) / warmup_steps")
rates = schedule(range(2, 11), *example)
expect_close(rates, expected_schedule(range(2, 11), *example), "learning_rate_at for the steps 2 to 10",
             atol=1e-12, rtol=1e-9, hint="min_lr + (peak_lr - min_lr) * 0.5 * (1 + cos(pi * progress)) with "
             "progress = (step - warmup_steps) / (total_steps - warmup_steps)")
expect_close(schedule([11, 50], *example), torch.tensor([1e-5, 1e-5], dtype=torch.float64),
             "learning_rate_at for the steps 11 and 50 (after total_steps=10)", atol=1e-12, rtol=1e-9,
             hint="after total_steps the rate stays at min_lr: cap progress at 1")
no_warmup = (8, 5e-4, 0, 1e-4, 0.0)
expect_close(schedule(range(9), *no_warmup), expected_schedule(range(9), *no_warmup),
             "learning_rate_at without warm-up (warmup_steps=0)", atol=1e-12, rtol=1e-9,
             hint="with warmup_steps=0 the decay starts at step 0, at peak_lr")
for bad in [(-1, *example), (3, 5, 1e-3, 5, 1e-4, 1e-5), (0, 4, 1e-3, 6, 1e-4, 1e-5)]:
    try:
        with forbid_reference_impl():
            learning_rate_at(*bad)
    except ValueError:
        pass
    else:
        raise CheckFailed(f"learning_rate_at{bad} should raise a ValueError: step must be >= 0 and "
                          "warmup_steps smaller than total_steps")
print("Exercise 10: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for args in [(100, 6e-4, 20, 6e-5, 6e-5), (7, 1.0, 6, 0.5, 0.1), (3, 0.01, 1, 0.0, 0.001)]:
    steps = range(args[0] + 3)
    expect_close(schedule(steps, *args), expected_schedule(steps, *args), f"learning_rate_at with the settings {args}",
                 atol=1e-12, rtol=1e-9)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 11 (1 point): gradient clipping
#
# A single batch with an unusually large gradient can throw a model far off (appendix D).
# Gradient clipping rescales all the gradients together when their **global** L2 norm, the
# norm of all gradients of all parameters taken as one long vector, exceeds `max_norm`. Write
# `clip_gradients(parameters, max_norm)`:
#
# * `parameters` is an iterable of tensors, e.g. `model.parameters()` (a generator: you can walk
#   it only once, so make a list); skip those whose `.grad` is `None`;
# * `total_norm = sqrt(sum over the gradients g of (g ** 2).sum())`;
# * `clip_coef = max_norm / (total_norm + 1e-6)` (the `1e-6` as PyTorch has it, so that a zero
#   gradient does not divide by zero); if `clip_coef < 1`, multiply every gradient **in place**
#   by `clip_coef` (e.g. `p.grad.mul_(clip_coef)`); otherwise leave the gradients alone;
# * return `total_norm` (before clipping) as a Python `float`; raise a `ValueError` if
#   `max_norm <= 0`.
#
# This is what `torch.nn.utils.clip_grad_norm_` does: write it yourself, without it.

# %% nbgrader={"grade": false, "grade_id": "ex11_clip_gradients_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def clip_gradients(parameters, max_norm):
    ### BEGIN SOLUTION
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = math.sqrt(sum(float((g**2).sum()) for g in grads))  # all gradients as one long vector
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1:
        for g in grads:
            g.mul_(clip_coef)
    return total_norm
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex11_clip_gradients_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 11: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
torch_clipping = CheckFailed("write the clipping yourself instead of calling torch.nn.utils.clip_grad_norm_")
no_clip_grad_norm = mock.patch.object(torch.nn.utils, "clip_grad_norm_", side_effect=torch_clipping)
no_clip_grads_with_norm = mock.patch.object(torch.nn.utils, "clip_grads_with_norm_", side_effect=torch_clipping)


def model_with_gradients(seed, scale):
    model = tiny_gpt(seed=seed)
    inputs, targets = token_dataset(2, seed=seed)[:]
    (scale * F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())).backward()
    return model


def expected_clipping(model, max_norm):  # PyTorch's clipping, on the gradients of the same model
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    total_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    clipped = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    return total_norm, clipped


model = model_with_gradients(seed=1, scale=10.0)
expected_norm, expected_grads = expected_clipping(model, max_norm=1.0)
before = [p.grad.clone() for p in model.parameters()]
with forbid_reference_impl(), no_clip_grad_norm, no_clip_grads_with_norm:
    total_norm = clip_gradients(model.parameters(), max_norm=1.0)
expect_true(not all(torch.equal(p.grad, grad) for p, grad in zip(model.parameters(), before)),
            f"clip_gradients(model.parameters(), max_norm=1.0) left the gradients unchanged, although their total "
            f"norm is {expected_norm:.2f}: scale them in place (p.grad.mul_(clip_coef)); model.parameters() is a "
            "generator, which can be walked only once, so make a list of it first")
expect_true(isinstance(total_norm, float), "clip_gradients(model.parameters(), max_norm=1.0) should return the "
            f"total norm as a Python float, got {type(total_norm).__name__}: return float(total_norm)")
expect_close(torch.tensor(total_norm), torch.tensor(expected_norm), "the total norm clip_gradients returns",
             hint="the L2 norm of all gradients together: sqrt of the sum of (g ** 2).sum() over every parameter, "
                  "before clipping (not the sum or mean of per-parameter norms)")
for (name, p), expected_grad in zip(model.named_parameters(), expected_grads):
    expect_close(p.grad, expected_grad, f"the gradient of {name} after clip_gradients(..., max_norm=1.0)",
                 hint="multiply every gradient in place by max_norm / (total_norm + 1e-6) when that is < 1")
small = model_with_gradients(seed=2, scale=1e-4)
before = [p.grad.clone() for p in small.parameters()]
with forbid_reference_impl(), no_clip_grad_norm, no_clip_grads_with_norm:
    clip_gradients(small.parameters(), max_norm=1.0)
for (name, p), grad in zip(small.named_parameters(), before):
    expect_close(p.grad, grad, f"the gradient of {name} when the total norm is below max_norm",
                 hint="leave the gradients unchanged when max_norm / (total_norm + 1e-6) >= 1")
small.pos_emb.weight.grad = None  # e.g. a frozen parameter: it has no gradient
try:
    with forbid_reference_impl(), no_clip_grad_norm, no_clip_grads_with_norm:
        clip_gradients(small.parameters(), max_norm=1.0)
except (TypeError, AttributeError) as error:
    raise CheckFailed(f"clip_gradients raised {type(error).__name__} ({error}) for parameters of which one has no "
                      "gradient: skip the parameters whose .grad is None") from error
expect_true(small.pos_emb.weight.grad is None, "clip_gradients gave pos_emb.weight a gradient, although it had "
            "none: skip the parameters whose .grad is None")
try:
    with forbid_reference_impl(), no_clip_grad_norm, no_clip_grads_with_norm:
        clip_gradients(small.parameters(), max_norm=0.0)
except ValueError:
    pass
else:
    raise CheckFailed("clip_gradients(..., max_norm=0.0) should raise a ValueError: max_norm must be > 0")
print("Exercise 11: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
model = model_with_gradients(seed=3, scale=50.0)
model.tok_emb.weight.grad = None  # a parameter without a gradient is skipped
model.out_head.weight.requires_grad_(False)
model.out_head.weight.grad = None
expected_norm, expected_grads = expected_clipping(model, max_norm=0.5)
with forbid_reference_impl(), no_clip_grad_norm, no_clip_grads_with_norm:
    total_norm = clip_gradients(list(model.parameters()), max_norm=0.5)
expect_close(torch.tensor(total_norm), torch.tensor(expected_norm), "the total norm with two parameters without gradients")
for (name, p), expected_grad in zip(model.named_parameters(), expected_grads):
    if expected_grad is None:
        expect_true(p.grad is None, f"clip_gradients gave {name} a gradient: skip parameters whose grad is None")
    else:
        expect_close(p.grad, expected_grad, f"the gradient of {name} after clipping to 0.5")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
