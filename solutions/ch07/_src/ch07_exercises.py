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
# # Chapter 7 exercises: fine-tuning to follow instructions
#
# These exercises make you write the code of chapter 7 yourself: the Alpaca prompt, the
# split of the 1,100 examples, the batches with padding that the loss ignores, training on
# the answers only, and the three ways to read and score what the fine-tuned model writes:
# extracting the answer, ROUGE-L against the reference answer, and the score a judge LLM
# gives. The checks use the book's instruction data and small hand-made examples: no model
# and no pretrained weights are needed, and each check runs in well under a second.
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
# | 1. The Alpaca prompt | 1 |
# | 2. Training, test and validation sets | 1 |
# | 3. Batches that the loss reads correctly | 3 |
# | 4. Train on the answers only | 2 |
# | 5. The answer in the generated text | 1 |
# | 6. ROUGE-L: score an answer without a judge | 3 |
# | 7. Read the judge's score | 2 |
# | 8. Predict what the loss sees | 2 |

# %% deletable=false editable=false nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Setup: run this cell first.
import re
import signal
import threading

import torch
import torch.nn.functional as F

from course_tools.checks import (
    CheckFailed,
    expect_close,
    expect_equal,
    expect_raises,
    expect_shape,
    expect_true,
    expect_type,
    forbid_reference_impl,
    run_checked,
    show_warnings_on_stdout,
)
from reference_impl.instruct import load_instruction_data
from reference_impl.tokenizer import get_tokenizer

show_warnings_on_stdout()
tokenizer = get_tokenizer("gpt2")  # tiktoken's GPT-2 encoding, from the course data: works offline
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>: ends every answer and pads the batches
IGNORE_INDEX = -100  # the target value that F.cross_entropy skips by default

data = load_instruction_data()  # dicts with the keys "instruction", "input" and "output"
print(f"{len(data):,} instruction examples; example 50: {data[50]}")



# %% [markdown]
# ## Exercise 1 (1 point): the Alpaca prompt
#
# The model learns to answer prompts of one fixed form, the Alpaca template (section 7.2).
# Write `format_input(entry)`, where `entry` is a dict with an `"instruction"` and maybe an
# `"input"`. It returns, with `\n` for a line break:
#
# * the line `Below is an instruction that describes a task. Write a response that appropriately completes the request.`,
# * an empty line, `### Instruction:` and, on the next line, the instruction;
# * only when the entry has a non-empty `"input"`: an empty line, `### Input:` and, on the
#   next line, the input. An entry without the key `"input"`, or with `""`, has no input section.
#
# Nothing follows (no line break at the end). Raise a `KeyError` when the entry has no
# `"instruction"`. For `data[50]`, `format_input(data[50])` is
#
# ```
# 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nIdentify the correct spelling of the following word.\n\n### Input:\nOcassion'
# ```
#
# and for `data[999]` (an empty input) it ends with `"### Instruction:\nWhat is an antonym of 'complicated'?"`.

# %% nbgrader={"grade": false, "grade_id": "ex1_prompt_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def format_input(entry):
    ### BEGIN SOLUTION
    if "instruction" not in entry:
        raise KeyError(f"an instruction example needs an 'instruction' key; this one has {sorted(entry)}")
    intro = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    instruction_text = f"{intro}\n\n### Instruction:\n{entry['instruction']}"
    input_text = f"\n\n### Input:\n{entry['input']}" if entry.get("input") else ""
    return instruction_text + input_text
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex1_prompt_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 1: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference

intro = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
with forbid_reference_impl():
    prompt = format_input(data[50])
expect_type(prompt, str, "format_input(data[50])")
expect_equal(prompt, intro + "\n\n### Instruction:\nIdentify the correct spelling of the following word."
             "\n\n### Input:\nOcassion", "format_input(data[50])",
             hint="the intro, a blank line, '### Instruction:' and the instruction on its own line, then the same "
                  "for '### Input:'; no line break at the end")
with forbid_reference_impl():
    prompt = format_input(data[999])
expect_equal(prompt, intro + "\n\n### Instruction:\nWhat is an antonym of 'complicated'?",
             "format_input(data[999]), whose input is ''", hint="an empty input gets no '### Input:' section")
prompt = run_checked(format_input, {"instruction": "Say hi."}, what="format_input({'instruction': 'Say hi.'})",
                     hint="an entry may have no 'input' key: entry.get('input') gives None instead of an error")
expect_equal(prompt, intro + "\n\n### Instruction:\nSay hi.", "format_input({'instruction': 'Say hi.'})",
             hint="an entry without the key 'input' has no input section: entry.get('input')")
expect_raises(KeyError, format_input, {"input": "x", "output": "y"}, what="format_input of an entry without 'instruction'",
              hint="raise KeyError('...') naming the missing key")
print("Exercise 1: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for entry in data[:40] + [{"instruction": "Multi\nline", "input": "a\nb"}, {"instruction": "", "input": "x"}]:
    with forbid_reference_impl():
        prompt = format_input(entry)
    expect_equal(prompt, reference.format_input(entry), f"format_input({entry})")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2 (1 point): training, test and validation sets
#
# The book splits the 1,100 examples in their order (the file is already shuffled): the
# first 85% for training, the next 10% for testing and the rest, about 5%, for validation
# (section 7.2). Write `split_data(data, train_frac=0.85, test_frac=0.1)`:
#
# * `train` is the first `int(len(data) * train_frac)` examples, `test` the next
#   `int(len(data) * test_frac)`, and `val` all that remain;
# * return the three lists `(train, test, val)`, in that order;
# * raise a `ValueError` unless `0 < train_frac`, `0 <= test_frac` and `train_frac + test_frac <= 1`.
#
# On the book's data: 935 training, 110 test and 55 validation examples.

# %% nbgrader={"grade": false, "grade_id": "ex2_split_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def split_data(data, train_frac=0.85, test_frac=0.1):
    ### BEGIN SOLUTION
    if not (0 < train_frac and 0 <= test_frac and train_frac + test_frac <= 1):
        raise ValueError(f"need 0 < train_frac, 0 <= test_frac and train_frac + test_frac <= 1, "
                         f"got train_frac={train_frac}, test_frac={test_frac}")
    train_end = int(len(data) * train_frac)
    test_end = train_end + int(len(data) * test_frac)
    return list(data[:train_end]), list(data[train_end:test_end]), list(data[test_end:])
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex2_split_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 2: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference

with forbid_reference_impl():
    parts = split_data(data)
expect_type(parts, tuple, "split_data(data)")
expect_equal(len(parts), 3, "the number of parts of split_data(data)", hint="return (train, test, val)")
expect_equal([len(part) for part in parts], [935, 110, 55], "the sizes of (train, test, val)",
             hint="int(len(data) * train_frac) for training, int(len(data) * test_frac) for testing, the rest "
                  "for validation; return them in the order (train, test, val)")
expect_equal(parts[0] + parts[1] + parts[2], data, "train + test + val", hint="split the data in its order, no shuffling")
with forbid_reference_impl():
    parts = split_data(list(range(10)), 0.5, 0.3)
expect_equal(list(parts), list(reference.split_instruction_data(list(range(10)), 0.5, 0.3)),
             "split_data(list(range(10)), 0.5, 0.3)")
expect_raises(ValueError, split_data, data, 0.9, 0.2, what="split_data(data, 0.9, 0.2)",
              hint="the fractions add up to more than 1")
expect_raises(ValueError, split_data, data, 0.0, 0.1, what="split_data(data, 0.0, 0.1)",
              hint="an empty training set is no use: train_frac must be > 0")
expect_raises(ValueError, split_data, data, 0.8, -0.1, what="split_data(data, 0.8, -0.1)",
              hint="test_frac cannot be negative")
print("Exercise 2: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for args in [(list(range(7)), 1.0, 0.0), (list(range(101)), 0.3, 0.3), ([], 0.85, 0.1), (data, 0.8, 0.15)]:
    with forbid_reference_impl():
        parts = split_data(*args)
    expect_equal(list(parts), list(reference.split_instruction_data(*args)),
                 f"split_data of {len(args[0])} examples, train_frac={args[1]}, test_frac={args[2]}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3 (3 points): batches that the loss reads correctly
#
# Write the book's final collate function (section 7.3),
# `collate(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None)`. `batch`
# is a list of lists of token ids (each a prompt and its answer). Return the pair
# `(inputs, targets)`, two `torch.long` tensors of the same shape:
#
# 1. append **one** `pad_token_id` to each sequence (it marks the end of the answer, and the
#    model must learn to produce it), then pad with `pad_token_id` to the length of the
#    longest sequence + 1;
# 2. `inputs` are the padded sequences without their last token, `targets` without their
#    first: the target at each position is the next token;
# 3. in the targets, every position after the first end token becomes `ignore_index`: for a
#    sequence of `n` ids, positions `n, n + 1, ...` of its target row. Count positions: do not
#    look for `pad_token_id` values, which may also occur inside a text;
# 4. with `allowed_max_length` given, keep the first `allowed_max_length` positions of both;
# 5. raise a `ValueError` for an empty batch.
#
# For `collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])`:
#
# ```
# inputs:  tensor([[    0,     1,     2,     3,     4],
#                  [    5,     6, 50256, 50256, 50256],
#                  [    7,     8,     9, 50256, 50256]])
# targets: tensor([[    1,     2,     3,     4, 50256],
#                  [    6, 50256,  -100,  -100,  -100],
#                  [    8,     9, 50256,  -100,  -100]])
# ```
#
# `F.cross_entropy` skips the targets -100 by default: padding adds nothing to the loss.

# %% nbgrader={"grade": false, "grade_id": "ex3_collate_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def collate(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None):
    ### BEGIN SOLUTION
    if len(batch) == 0:
        raise ValueError("collate got an empty batch")
    batch_max_length = max(len(ids) for ids in batch) + 1
    inputs_lst, targets_lst = [], []
    for ids in batch:
        padded = list(ids) + [pad_token_id] * (batch_max_length - len(ids))
        inputs = torch.tensor(padded[:-1], dtype=torch.long)
        targets = torch.tensor(padded[1:], dtype=torch.long)
        targets[len(ids) :] = ignore_index  # targets[len(ids) - 1] is the end token: kept
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst), torch.stack(targets_lst)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex3_collate_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 3: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference

batch = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]
with forbid_reference_impl():
    result = collate(batch)
expect_type(result, tuple, "collate(batch)")
expect_equal(len(result), 2, "the number of results of collate(batch)", hint="return the pair (inputs, targets)")
inputs, targets = result
expect_shape(inputs, (3, 5), "inputs", hint="(batch, longest + 1 - 1): pad to the longest + 1, then drop the last token")
expect_equal(inputs.dtype, torch.long, "the dtype of inputs", hint="token ids are integers: dtype=torch.long")
expect_equal(inputs, torch.tensor([[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]), "inputs",
             hint="append pad_token_id to each sequence, pad to the longest + 1, and drop the last position")
expect_shape(targets, (3, 5), "targets", hint="the same shape as the inputs")
expect_equal(targets.dtype, torch.long, "the dtype of targets", hint="F.cross_entropy needs torch.long class targets")
expect_equal(targets[0], torch.tensor([1, 2, 3, 4, 50256]), "the targets of the longest sequence",
             hint="the targets are the padded sequence shifted by one; the end token stays a target")
expect_equal(targets, torch.tensor([[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]),
             "targets", hint="keep the first end token as a target; every padding target after it is ignore_index")
inputs, targets = run_checked(collate, [[0, 50256, 2], [5]], what="collate([[0, 50256, 2], [5]])",
                               hint="the pad id may also occur inside a text")
expect_equal(targets, torch.tensor([[50256, 2, 50256], [50256, -100, -100]]),
             "the targets of collate([[0, 50256, 2], [5]]), whose first text holds the pad id",
             hint="mask the positions from len(ids) on, instead of looking for pad_token_id values")
with forbid_reference_impl():
    inputs, targets = collate(batch, pad_token_id=99, ignore_index=-1, allowed_max_length=3)
expected = reference.custom_collate_fn(batch, pad_token_id=99, ignore_index=-1, allowed_max_length=3)
expect_equal(inputs, expected[0], "the inputs of collate(batch, pad_token_id=99, ignore_index=-1, allowed_max_length=3)",
             hint="keep the first allowed_max_length positions: inputs[:allowed_max_length]")
expect_equal(targets, expected[1], "the targets of collate(batch, pad_token_id=99, ignore_index=-1, allowed_max_length=3)",
             hint="use the arguments pad_token_id and ignore_index; cut the targets like the inputs")
expect_raises(ValueError, collate, [], what="collate([])", hint="an empty batch has no longest sequence")
print("Exercise 3: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
dataset = reference.InstructionDataset(data[:6], tokenizer)
real_batch = [dataset[i] for i in range(6)]
for args in [dict(), dict(allowed_max_length=40), dict(allowed_max_length=1000)]:
    with forbid_reference_impl():
        inputs, targets = collate(real_batch, **args)
    expected = reference.custom_collate_fn(real_batch, **args)
    expect_equal(inputs, expected[0], f"the inputs of a batch of 6 encoded examples, {args}")
    expect_equal(targets, expected[1], f"the targets of a batch of 6 encoded examples, {args}")
with forbid_reference_impl():
    inputs, targets = collate([[3, 3, 3]])
expect_equal((inputs, targets), (torch.tensor([[3, 3, 3]]), torch.tensor([[3, 3, 50256]])), "collate([[3, 3, 3]])")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (2 points): train on the answers only
#
# The loss of exercise 3 also trains the model to predict the prompt, which it never has
# to write. The book's exercise 7.2 masks the prompt too: only the answer's tokens (and
# the end token) count. Write `mask_prompt_targets(targets, prompt_lengths, ignore_index=-100)`:
#
# * `targets` has shape `(batch, num_tokens)`, as `collate` returns it; `prompt_lengths[i]`
#   is the number of tokens of example `i`'s prompt (`format_input(entry)`);
# * `targets[i, j]` is token `j + 1`, so the targets that predict the prompt's tokens
#   `1, ..., prompt_length - 1` are the first `prompt_length - 1` positions: set them to
#   `ignore_index`. (Token 0 is never a target.) The first token of the answer stays a target;
# * return a **new** tensor: do not change `targets`.
#
# For the targets of exercise 3's example and `prompt_lengths = [3, 1, 2]`:
#
# ```
# tensor([[ -100,  -100,     3,     4, 50256],
#         [    6, 50256,  -100,  -100,  -100],
#         [ -100,     9, 50256,  -100,  -100]])
# ```

# %% nbgrader={"grade": false, "grade_id": "ex4_mask_prompt_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mask_prompt_targets(targets, prompt_lengths, ignore_index=-100):
    ### BEGIN SOLUTION
    masked = targets.clone()
    for i, prompt_length in enumerate(prompt_lengths):
        masked[i, : prompt_length - 1] = ignore_index
    return masked
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex4_mask_prompt_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 4: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference

targets = torch.tensor([[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]])
original = targets.clone()
with forbid_reference_impl():
    masked = mask_prompt_targets(targets, [3, 1, 2])
expect_equal(targets, original, "targets after mask_prompt_targets(targets, ...)",
             hint="return a new tensor (targets.clone()) instead of changing targets")
expect_type(masked, torch.Tensor, "mask_prompt_targets(targets, [3, 1, 2])")
expect_equal(masked, torch.tensor([[-100, -100, 3, 4, 50256], [6, 50256, -100, -100, -100], [-100, 9, 50256, -100, -100]]),
             "mask_prompt_targets(targets, [3, 1, 2])",
             hint="targets[i, j] predicts token j + 1: mask the first prompt_length - 1 targets of row i, not prompt_length")
with forbid_reference_impl():
    masked = mask_prompt_targets(targets, [2, 2, 9], ignore_index=-1)
expect_equal(masked, torch.tensor([[-1, 2, 3, 4, 50256], [-1, 50256, -100, -100, -100], [-1, -1, -1, -1, -1]]),
             "mask_prompt_targets(targets, [2, 2, 9], ignore_index=-1)",
             hint="use the ignore_index argument; a prompt longer than the row masks the whole row")
print("Exercise 4: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
dataset = reference.InstructionDataset(data[10:16], tokenizer, with_prompt_length=True)
items = [dataset[i] for i in range(6)]
for allowed_max_length in (None, 60):
    _, unmasked = reference.custom_collate_fn([ids for _, ids in items], allowed_max_length=allowed_max_length)
    _, expected = reference.custom_collate_fn(items, allowed_max_length=allowed_max_length, mask_instruction=True)
    with forbid_reference_impl():
        masked = mask_prompt_targets(unmasked, [length for length, _ in items])
    expect_equal(masked, expected, f"the masked targets of 6 encoded examples, allowed_max_length={allowed_max_length}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5 (1 point): the answer in the generated text
#
# The model continues the prompt: the text it generates starts with the prompt itself, then
# `### Response:` and the answer (section 7.7). Write `extract_response(generated_text, input_text)`:
#
# * drop the first `len(input_text)` characters of `generated_text` (the prompt);
# * remove every `### Response:` from the rest;
# * strip the spaces and line breaks at both ends, and return the answer.
#
# For `prompt = format_input(data[50])` (as in exercise 1),
# `extract_response(prompt + "\n\n### Response:\nThe correct spelling is 'Occasion'.\n", prompt)`
# is `"The correct spelling is 'Occasion'."`.

# %% nbgrader={"grade": false, "grade_id": "ex5_extract_response_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def extract_response(generated_text, input_text):
    ### BEGIN SOLUTION
    return generated_text[len(input_text) :].replace("### Response:", "").strip()
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex5_extract_response_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exercise 5: checks (1 point). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference

prompt = reference.format_input(data[50])
with forbid_reference_impl():
    answer = extract_response(prompt + "\n\n### Response:\nThe correct spelling is 'Occasion'.\n", prompt)
expect_equal(answer, "The correct spelling is 'Occasion'.", "extract_response(prompt + response, prompt)",
             hint="drop the prompt (generated_text[len(input_text):]), remove '### Response:', strip the ends")
with forbid_reference_impl():
    answer = extract_response(prompt + "  Occasion ### Response: Occasion\n\n", prompt)
expect_equal(answer, "Occasion  Occasion", "the answer of a text with '### Response:' in the middle",
             hint="remove every '### Response:' (str.replace), then strip only the ends")
with forbid_reference_impl():
    answer = extract_response(prompt, prompt)
expect_equal(answer, "", "extract_response(prompt, prompt): nothing generated")
print("Exercise 5: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
for entry in data[:20]:
    prompt = reference.format_input(entry)
    generated = prompt + "\n\n### Response:\n" + entry["output"] + "\n"
    with forbid_reference_impl():
        answer = extract_response(generated, prompt)
    expect_equal(answer, reference.extract_response(generated, prompt), f"the answer to {entry['instruction']!r}")
    expect_equal(answer, entry["output"].strip(), f"the answer to {entry['instruction']!r}")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6 (3 points): ROUGE-L: score an answer without a judge
#
# ROUGE-L compares an answer with the reference answer by their **longest common
# subsequence** (LCS) of words: the longest list of words that both contain in the same
# order, not necessarily next to each other. Write two functions:
#
# 1. `lcs_length(a, b)`: the length of the LCS of two lists `a` and `b`, by dynamic
#    programming: with `L[i][j]` the LCS length of `a[:i]` and `b[:j]`, `L[i][j] = L[i-1][j-1] + 1`
#    if `a[i-1] == b[j-1]`, else `max(L[i-1][j], L[i][j-1])`; `L[i][0] = L[0][j] = 0`.
#    (Trying every subsequence would take exponential time.)
# 2. `rouge_l_f1(response, reference)`: split both texts into words with
#    `re.findall(r"\w+", text.lower())` (so case and punctuation do not count). With `lcs`
#    common words, precision `lcs / len(response words)`, recall `lcs / len(reference words)`,
#    return the F1 score `2 * precision * recall / (precision + recall)`, a float in `[0, 1]`.
#    Two texts without words score `1.0`; when `lcs` is 0, return `0.0` (no division by zero).
#
# `lcs_length(list("ABCBDAB"), list("BDCABA"))` is 4 (for example `BCBA`).
# `rouge_l_f1("The cat sat on the mat.", "The cat is on the mat")`: the LCS is
# "the cat on the mat", 5 words; precision 5/6, recall 5/6, F1 `0.8333...`.
# `rouge_l_f1("The capital of France is Paris.", "Paris")` is `2/7 = 0.2857...`.

# %% nbgrader={"grade": false, "grade_id": "ex6_rouge_l_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lcs_length(a, b):
    ### BEGIN SOLUTION
    previous = [0] * (len(b) + 1)  # one row of the table L at a time
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
    ### END SOLUTION


def rouge_l_f1(response, reference):
    ### BEGIN SOLUTION
    response_words = re.findall(r"\w+", response.lower())
    reference_words = re.findall(r"\w+", reference.lower())
    if not response_words and not reference_words:
        return 1.0
    common = lcs_length(response_words, reference_words)
    if common == 0:
        return 0.0
    precision = common / len(response_words)
    recall = common / len(reference_words)
    return 2 * precision * recall / (precision + recall)
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex6_rouge_l_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Exercise 6: checks (3 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import instruct as reference


def expect_number(actual, expected, what, hint=None):
    expect_true(isinstance(actual, (int, float)) and not isinstance(actual, bool),
                f"{what} should be a number, got {type(actual).__name__}")
    expect_close(torch.tensor(float(actual), dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), what,
                 atol=1e-12, hint=hint)


with forbid_reference_impl():
    length = lcs_length(list("ABCBDAB"), list("BDCABA"))
expect_equal(length, 4, 'lcs_length(list("ABCBDAB"), list("BDCABA"))',
             hint="L[i][j] = L[i-1][j-1] + 1 when a[i-1] == b[j-1], else max(L[i-1][j], L[i][j-1])")
lengths = [run_checked(lcs_length, [], ["x"], what="lcs_length([], ['x'])", hint="an empty list shares nothing: 0"),
           run_checked(lcs_length, ["a", "b"], ["a", "b"], what="lcs_length(['a', 'b'], ['a', 'b'])"),
           run_checked(lcs_length, ["a", "b"], ["b", "a"], what="lcs_length(['a', 'b'], ['b', 'a'])")]
expect_equal(lengths, [0, 2, 1], "lcs_length of ([], ['x']), (['a', 'b'], ['a', 'b']) and (['a', 'b'], ['b', 'a'])",
             hint="the common words must keep their order: ['a', 'b'] and ['b', 'a'] share 1")
with forbid_reference_impl():
    f1 = rouge_l_f1("The cat sat on the mat.", "The cat is on the mat")
expect_number(f1, 5 / 6, 'rouge_l_f1("The cat sat on the mat.", "The cat is on the mat")',
              hint="lower-case words with re.findall(r'\\w+', text.lower()); LCS 5 of 6 words each")
with forbid_reference_impl():
    f1 = rouge_l_f1("The capital of France is Paris.", "Paris")
expect_number(f1, 2 / 7, 'rouge_l_f1("The capital of France is Paris.", "Paris")',
              hint="precision 1/6, recall 1/1, F1 = 2 * precision * recall / (precision + recall)")
words_a = " ".join(entry["output"] for entry in data[:40]).lower().split()[:150]
words_b = " ".join(entry["output"] for entry in data[40:80]).lower().split()[:150]


def too_slow(signum, frame):
    raise CheckFailed("lcs_length of two texts of 150 words took more than 10 s: fill the table L row by row "
                      "(dynamic programming) instead of trying subsequences or recursing without remembering results")


timed = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
if timed:  # a time limit where the system has one (not on Windows)
    previous_handler = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
try:
    length = run_checked(lcs_length, words_a, words_b, what="lcs_length of two texts of 150 words")
finally:
    if timed:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_handler)
expect_equal(length, reference.lcs_length(words_a, words_b), "lcs_length of two texts of 150 words",
             hint="L[i][j] = L[i-1][j-1] + 1 when a[i-1] == b[j-1], else max(L[i-1][j], L[i][j-1])")
hint = "two texts without words score 1.0; no common word scores 0.0, without dividing by zero"
scores = [run_checked(rouge_l_f1, response, target, what=f"rouge_l_f1({response!r}, {target!r})", hint=hint)
          for response, target in [("", ""), ("Hello!", "Goodbye."), ("", "Paris"), ("...", "!")]]
expect_equal(scores, [1.0, 0.0, 0.0, 1.0], "rouge_l_f1 of ('', ''), ('Hello!', 'Goodbye.'), ('', 'Paris'), ('...', '!')",
             hint=hint)
print("Exercise 6: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
generator = torch.Generator().manual_seed(0)
for _ in range(20):
    a = [chr(97 + int(k)) for k in torch.randint(0, 4, (int(torch.randint(0, 12, (1,), generator=generator)),), generator=generator)]
    b = [chr(97 + int(k)) for k in torch.randint(0, 4, (int(torch.randint(0, 12, (1,), generator=generator)),), generator=generator)]
    with forbid_reference_impl():
        length = lcs_length(a, b)
    expect_equal(length, reference.lcs_length(a, b), f"lcs_length({a}, {b})")
with forbid_reference_impl():
    length = lcs_length(["w"] * 300, ["w"] * 200)
expect_equal(length, 200, "lcs_length of two lists of 300 and 200 equal words")
for entry_a, entry_b in zip(data[:15], data[15:30]):
    for response, target in [(entry_a["output"], entry_b["output"]), (entry_a["output"], entry_a["output"].upper() + "!"),
                             (entry_a["instruction"], entry_a["output"])]:
        with forbid_reference_impl():
            f1 = rouge_l_f1(response, target)
        expect_number(f1, reference.rouge_l_f1(response, target), f"rouge_l_f1({response!r}, {target!r})")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7 (2 points): read the judge's score
#
# Section 7.8 asks a larger LLM to score each answer from 0 to 100 and to "respond with the
# integer number only". Judges do not always obey: they write "Score: 85.", "85/100" or
# "On a scale from 0 to 100, I would give it 85". Write `parse_score(answer)`, which
# returns the score as an `int`, or `None` when the answer holds no single score:
#
# 1. first remove the mentions of the scale itself, in any case: `0 to 100` and `0-100`
#    (with or without spaces around `to` or `-`), `/100` and `out of 100` (spaces allowed
#    before the `100`);
# 2. find every number that remains: an optional minus sign, digits, and optionally a dot
#    followed by digits (`re.findall(r"-?\d+(?:\.\d+)?", ...)`);
# 3. if the numbers have exactly one distinct value (`"90. Yes, 90"` is one score), round it
#    with Python's `round` and return it when it is in `0..100`; otherwise (no number, two
#    different numbers, or a score outside 0-100) return `None`.
#
# | answer | `parse_score(answer)` |
# |---|---|
# | `"85"`, `"Score: 85."`, `"85/100"`, `"85 out of 100"` | `85` |
# | `"77 / 100"`, `"77 OUT OF 100"` | `77` |
# | `"On a scale from 0 to 100, I would give it 85"` | `85` |
# | `"Scale 0-100: 73"` | `73` |
# | `"92.7"` | `93` |
# | `"I give it a 90. Yes, 90."` | `90` |
# | `"80 or 90"`, `"150"`, `"-5"`, `"No score"` | `None` |

# %% nbgrader={"grade": false, "grade_id": "ex7_parse_score_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def parse_score(answer):
    ### BEGIN SOLUTION
    without_scale = re.sub(r"\b0\s*(?:to|-)\s*100\b|(?:/|\bout of)\s*100\b", " ", answer, flags=re.IGNORECASE)
    numbers = {float(number) for number in re.findall(r"-?\d+(?:\.\d+)?", without_scale)}
    if len(numbers) != 1:
        return None
    score = round(numbers.pop())
    return score if 0 <= score <= 100 else None
    ### END SOLUTION


# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex7_parse_score_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 7: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
from reference_impl import judge as reference

examples = {
    "85": 85, "Score: 85.": 85, "85/100": 85, "85 out of 100": 85, "77 / 100": 77, "77 OUT OF 100": 77,
    "On a scale from 0 to 100, I would give it 85": 85, "Scale 0-100: 73": 73, "92.7": 93,
    "I give it a 90. Yes, 90.": 90, "80 or 90": None, "150": None, "-5": None, "No score": None,
}
hints = {
    "85": "a plain number is the score", "Score: 85.": "the dot after 85 ends the sentence: it is no decimal",
    "85/100": "remove '/100' first", "85 out of 100": "remove 'out of 100' first",
    "77 / 100": "spaces may come before the 100 of '/100': r'/\\s*100'",
    "77 OUT OF 100": "remove the scale mentions in any case: re.sub(..., flags=re.IGNORECASE)",
    "On a scale from 0 to 100, I would give it 85": "remove '0 to 100' first",
    "Scale 0-100: 73": "remove '0-100' first", "92.7": "a decimal is rounded with round()",
    "I give it a 90. Yes, 90.": "the same number twice is one score: compare the distinct values",
    "80 or 90": "two different numbers are no single score: None", "150": "a score above 100 is None",
    "-5": "the minus sign belongs to the number: -5 is below 0, so None", "No score": "no number: None",
}
for answer, expected in examples.items():
    with forbid_reference_impl():
        score = parse_score(answer)
    expect_equal(score, expected, f"parse_score({answer!r})", hint=hints[answer])
    expect_true(score is None or type(score) is int, f"parse_score({answer!r}) should be an int, got {score!r}")
print("Exercise 7: the visible checks pass (grading runs more).")
### BEGIN HIDDEN TESTS
hidden_answers = ["100", "0", "SCORE: 0 TO 100 -> 64", "I rate it 77 OUT OF 100.", "77 / 100", "50.2", "99.9",
                  "100 out of 100", "The response scores 40, maybe 45.", "", "Score: 88\n", "Between 0 to 100: 0",
                  "-0", "3.0 and 3", "0 - 100 scale, 12"]
for answer in hidden_answers:
    with forbid_reference_impl():
        score = parse_score(answer)
    expect_equal(score, reference.parse_score(answer), f"parse_score({answer!r})")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 8 (2 points): predict what the loss sees
#
# Answer two questions: each function returns your answer (replace its two lines with
# `return` and the answer).
#
# 1. `answer_loss_targets()` (an `int`): `collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])` of
#    exercise 3 gives 15 targets. How many of them count in the cross-entropy loss
#    (`F.cross_entropy(..., ignore_index=-100)`, the default)?
# 2. `answer_masking()` (one letter, a `str`): with `mask_prompt_targets` of exercise 4, what
#    changes in training?
#    * `"A"`: the model no longer reads the prompt: its tokens are removed from the inputs.
#    * `"B"`: the model still reads the whole prompt as input, but the loss (and so the
#      gradient) only comes from predicting the answer's tokens and the end token.
#    * `"C"`: the sequences get shorter, so each training step is faster.
#    * `"D"`: at inference time, the model must be given the masked prompt.

# %% nbgrader={"grade": false, "grade_id": "ex8_predictions_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def answer_loss_targets():
    ### BEGIN SOLUTION
    return 10  # 5 + 2 + 3: each sequence's tokens after the first, plus its end token
    ### END SOLUTION


def answer_masking():
    ### BEGIN SOLUTION
    return "B"
    ### END SOLUTION

# %% deletable=false editable=false nbgrader={"grade": true, "grade_id": "ex8_predictions_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Exercise 8: checks (2 points). Run this cell to test your code.
# Do not edit it: grading restores the original and adds hidden checks.
with forbid_reference_impl():
    loss_targets = answer_loss_targets()
    masking = answer_masking()
expect_true(isinstance(loss_targets, int) and 0 <= loss_targets <= 15,
            f"answer_loss_targets() should be an int from 0 to 15 (a number of targets), got {loss_targets!r}")
expect_true(masking in ("A", "B", "C", "D"), f"answer_masking() should be one of 'A', 'B', 'C', 'D', got {masking!r}")
print("Exercise 8: the answers have the right types (grading checks their values).")
### BEGIN HIDDEN TESTS
expect_equal(loss_targets, 10, "answer_loss_targets()")
expect_equal(masking, "B", "answer_masking()")
### END HIDDEN TESTS

# %% [markdown]
# ## Before you submit
#
# Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
# finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
# graded as usual.
