"""Instruction fine-tuning (chapter 7): the data, the prompt, the batches, the answers, the score."""

import json
import re
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

from reference_impl.generate import generate, text_to_token_ids, token_ids_to_text
from reference_impl.instruct import (
    IGNORE_INDEX,
    PAD_TOKEN_ID,
    InstructionDataset,
    create_instruction_dataloader,
    custom_collate_fn,
    extract_response,
    format_input,
    format_response,
    generate_responses,
    lcs_length,
    load_instruction_data,
    load_responses,
    rouge_l_f1,
    save_responses,
    score_responses,
    split_instruction_data,
    word_tokens,
)
from reference_impl.model import GPTConfig, GPTModel
from reference_impl.train import calc_loss_batch, calc_loss_loader, train_model_simple

WITH_INPUT = {
    "instruction": "Identify the correct spelling of the following word.",
    "input": "Ocassion",
    "output": "The correct spelling is 'Occasion.'",
}
WITHOUT_INPUT = {
    "instruction": "What is an antonym of 'complicated'?",
    "input": "",
    "output": "An antonym of 'complicated' is 'simple'.",
}


@pytest.fixture(scope="module")
def tokenizer():
    from reference_impl.download import DataFileError
    from reference_impl.tokenizer import get_tokenizer

    try:
        return get_tokenizer("gpt2")
    except DataFileError as err:
        pytest.skip(f"GPT-2's BPE files are not in the course cache: {err}")


@pytest.fixture
def instruction_data(data_dir):
    return load_instruction_data()


# ---------------------------------------------------------------------------------------
# The data and its split
# ---------------------------------------------------------------------------------------


def test_instruction_data_is_the_books(instruction_data):
    assert len(instruction_data) == 1100
    assert all(set(entry) == {"instruction", "input", "output"} for entry in instruction_data)
    assert instruction_data[50] == WITH_INPUT
    assert instruction_data[999] == WITHOUT_INPUT


def test_split_is_train_then_test_then_validation(instruction_data):
    train_data, test_data, val_data = split_instruction_data(instruction_data)
    assert (len(train_data), len(test_data), len(val_data)) == (935, 110, 55)
    assert train_data == instruction_data[:935]
    assert test_data == instruction_data[935:1045]
    assert val_data == instruction_data[1045:]
    # The examples the book shows from each part.
    assert test_data[0]["instruction"] == "Rewrite the sentence using a simile."
    assert val_data[0]["output"] == "The meal is cooked by the chef every day."


def test_split_fractions_round_down_and_the_rest_is_validation():
    splits = split_instruction_data(list(range(20)), train_frac=0.5, test_frac=0.25)
    assert splits.train == list(range(10))
    assert splits.test == list(range(10, 15))
    assert splits.val == list(range(15, 20))
    assert split_instruction_data(list(range(9))) == ([0, 1, 2, 3, 4, 5, 6], [], [7, 8])  # int(7.65), int(0.9)


@pytest.mark.parametrize("train_frac, test_frac", [(0.0, 0.1), (0.9, 0.2), (1.5, 0.0), (0.8, -0.1)])
def test_split_rejects_impossible_fractions(train_frac, test_frac):
    with pytest.raises(ValueError, match="train_frac"):
        split_instruction_data(list(range(10)), train_frac, test_frac)


# ---------------------------------------------------------------------------------------
# The prompt
# ---------------------------------------------------------------------------------------


def test_format_input_with_an_input():
    assert format_input(WITH_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
        "### Instruction:\nIdentify the correct spelling of the following word.\n\n"
        "### Input:\nOcassion"
    )
    assert format_response(WITH_INPUT) == "\n\n### Response:\nThe correct spelling is 'Occasion.'"


def test_format_input_without_an_input_has_no_input_section():
    assert format_input(WITHOUT_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
        "### Instruction:\nWhat is an antonym of 'complicated'?"
    )
    no_input_key = {"instruction": WITHOUT_INPUT["instruction"], "output": WITHOUT_INPUT["output"]}
    assert format_input(no_input_key) == format_input(WITHOUT_INPUT)


def test_format_input_names_a_missing_key():
    with pytest.raises(KeyError, match="'instruction'"):
        format_input({"question": "2 + 2?", "output": "4"})
    with pytest.raises(KeyError, match="'output'"):
        format_response({"instruction": "Add 2 and 2."})


@pytest.mark.parametrize("field, value", [("output", None), ("output", 4), ("instruction", None), ("input", ["2"])])
def test_a_field_that_is_not_text_is_refused_instead_of_learnt_as_its_repr(tokenizer, field, value):
    entry = {"instruction": "Add 2 and 2.", "input": "", "output": "4", field: value}
    with pytest.raises(ValueError, match=re.escape(f"example 1 of the data: the example's '{field}' is {value!r}")):
        InstructionDataset([WITHOUT_INPUT, entry], tokenizer)


def test_a_missing_input_or_a_null_input_means_no_input():
    assert format_input({"instruction": "Say hi.", "input": None}) == format_input({"instruction": "Say hi."})


def test_instruction_dataset_holds_prompt_plus_response_tokens(tokenizer):
    dataset = InstructionDataset([WITH_INPUT, WITHOUT_INPUT], tokenizer)
    assert len(dataset) == 2
    assert dataset[1] == tokenizer.encode(format_input(WITHOUT_INPUT) + format_response(WITHOUT_INPUT))

    with_lengths = InstructionDataset([WITH_INPUT, WITHOUT_INPUT], tokenizer, with_prompt_length=True)
    prompt_length, token_ids = with_lengths[0]
    assert token_ids == dataset[0]
    assert token_ids[:prompt_length] == tokenizer.encode(format_input(WITH_INPUT))


# ---------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------

BOOK_BATCH = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def test_collate_pads_shifts_and_ignores_padding_as_in_the_book():
    inputs, targets = custom_collate_fn(BOOK_BATCH)
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]
    assert BOOK_BATCH == [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]  # the items are not changed


def test_collate_truncates_to_allowed_max_length():
    inputs, targets = custom_collate_fn(BOOK_BATCH, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, 50256], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, 50256, -100], [8, 9, 50256]]


def test_collate_with_other_pad_and_ignore_values():
    inputs, targets = custom_collate_fn([[1, 2], [3]], pad_token_id=0, ignore_index=-1)
    assert inputs.tolist() == [[1, 2], [3, 0]]
    assert targets.tolist() == [[2, 0], [0, -1]]


def test_collate_counts_positions_so_a_pad_token_inside_the_text_is_kept():
    # The book compares tokens with the pad id, which would mask the real end token here.
    inputs, targets = custom_collate_fn([[1, PAD_TOKEN_ID, 2], [3]])
    assert inputs.tolist() == [[1, 50256, 2], [3, 50256, 50256]]
    assert targets.tolist() == [[50256, 2, 50256], [50256, -100, -100]]


def test_collate_can_mask_the_instruction():
    # (prompt_length, token_ids): the targets that are prompt tokens are ignored too.
    batch = [(3, [0, 1, 2, 3, 4]), (1, [5, 6])]
    inputs, targets = custom_collate_fn(batch, mask_instruction=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256]]
    assert targets.tolist() == [[-100, -100, 3, 4, 50256], [6, 50256, -100, -100, -100]]
    # Without mask_instruction the prompt lengths are not used.
    assert custom_collate_fn(batch)[1].tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100]]


def test_collate_mask_instruction_needs_prompt_lengths():
    with pytest.raises(ValueError, match="with_prompt_length=True"):
        custom_collate_fn(BOOK_BATCH, mask_instruction=True)


def test_collate_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        custom_collate_fn([])


def test_collate_works_as_a_partial_in_a_dataloader():
    collate = partial(custom_collate_fn, device="cpu", allowed_max_length=4)
    (inputs, targets), (inputs_2, _) = DataLoader(BOOK_BATCH, batch_size=2, collate_fn=collate)
    assert inputs.tolist() == [[0, 1, 2, 3], [5, 6, 50256, 50256]]
    assert targets.tolist() == [[1, 2, 3, 4], [6, 50256, -100, -100]]
    assert inputs_2.tolist() == [[7, 8, 9]]


def test_padding_adds_nothing_to_the_loss():
    # A padded batch gives the same loss as its sequences (each with its end token) on their own.
    torch.manual_seed(0)
    pad = 63
    model = GPTModel(GPTConfig(vocab_size=64, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0))
    short, long = [5, 6], [1, 2, 3, 4, 7]
    inputs, targets = custom_collate_fn([short, long], pad_token_id=pad)
    logits = model(inputs)
    batch_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    per_token = []
    for ids in (short, long):
        x, y = torch.tensor([ids]), torch.tensor([ids[1:] + [pad]])
        per_token.append(torch.nn.functional.cross_entropy(model(x)[0], y[0], reduction="none"))
    assert batch_loss.item() == pytest.approx(torch.cat(per_token).mean().item(), rel=1e-6)
    assert calc_loss_batch(inputs, targets, model, "cpu").item() == pytest.approx(batch_loss.item(), rel=1e-6)


def test_dataloader_pads_each_batch_to_its_longest_example_plus_one(instruction_data, tokenizer):
    data = instruction_data[:10]
    loader = create_instruction_dataloader(data, tokenizer, batch_size=4, shuffle=False, drop_last=False)
    lengths = [len(ids) for ids in InstructionDataset(data, tokenizer)]
    shapes = [tuple(inputs.shape) for inputs, _ in loader]
    assert shapes == [(4, max(lengths[0:4])), (4, max(lengths[4:8])), (2, max(lengths[8:10]))]
    assert shapes == [(4, 74), (4, 61), (2, 61)]

    masked = create_instruction_dataloader(data, tokenizer, batch_size=4, shuffle=False, mask_instruction=True)
    _, targets = next(iter(masked))
    prompt_length = len(tokenizer.encode(format_input(data[0])))
    assert (targets[0, : prompt_length - 1] == IGNORE_INDEX).all()
    assert targets[0, prompt_length - 1] != IGNORE_INDEX  # the first response token is learnt


# ---------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------


def test_extract_response_drops_prompt_and_header():
    prompt = format_input(WITHOUT_INPUT)
    generated = prompt + "\n\n### Response:\nAn antonym of 'complicated' is 'simple'.\n"
    assert extract_response(generated, prompt) == "An antonym of 'complicated' is 'simple'."
    assert extract_response(prompt + " Simple. ", prompt) == "Simple."  # no header written
    assert extract_response(prompt, prompt) == ""


# ---------------------------------------------------------------------------------------
# The offline score: ROUGE-L F1 on lower-cased words
# ---------------------------------------------------------------------------------------


def test_word_tokens_ignore_case_and_punctuation():
    assert word_tokens("The car is as fast as Lightning!") == ["the", "car", "is", "as", "fast", "as", "lightning"]
    assert word_tokens("'Occasion.'  45,000 m") == ["occasion", "45", "000", "m"]
    assert word_tokens(" ... ") == []


def test_lcs_length():
    assert lcs_length("abcbdab", "bdcaba") == 4  # the textbook example: "bcba"
    assert lcs_length(["a", "b"], []) == 0
    assert lcs_length(["x", "y", "z"], ["x", "y", "z"]) == 3


@pytest.mark.parametrize(
    "response, reference, f1",
    [
        # 5 of 6 words in order: P = R = 5/6.
        ("the cat is on the mat", "The cat sat on the mat.", 5 / 6),
        # LCS 2, P = 2/2, R = 2/4: F1 = 2 * 1 * 0.5 / 1.5.
        ("b d", "a b c d", 2 / 3),
        # Order matters: only one word of a reversed sentence is in sequence.
        ("d c b a", "a b c d", 1 / 4),
        ("The car is as fast as lightning", "the car is as fast as lightning.", 1.0),
        ("nothing in common", "a b c", 0.0),
        ("", "a b c", 0.0),
        ("", "", 1.0),
    ],
)
def test_rouge_l_f1_hand_computed(response, reference, f1):
    assert rouge_l_f1(response, reference) == pytest.approx(f1, abs=1e-12)


def test_score_responses_gives_each_score_their_mean_and_exact_matches():
    entries = [
        {"output": "The car is as fast as lightning.", "model_response": "the car is as fast as lightning"},
        {"output": "a b c d", "model_response": "b d"},
        {"output": "a b c d", "model_response": "nothing"},
        {"output": "The cat sat on the mat.", "model_response": "the cat is on the mat"},
    ]
    report = score_responses(entries)
    assert report.scores == pytest.approx([100.0, 200 / 3, 0.0, 500 / 6])
    assert report.mean == pytest.approx((100 + 200 / 3 + 0 + 500 / 6) / 4)
    assert report.exact_match == 25.0


def test_score_responses_reads_another_key_and_names_missing_ones():
    entries = [{"output": "yes", "other": "Yes."}]
    assert score_responses(entries, response_key="other").scores == [100.0]
    with pytest.raises(KeyError, match="'model_response'"):
        score_responses(entries)
    with pytest.raises(ValueError, match="no entries"):
        score_responses([])


# ---------------------------------------------------------------------------------------
# End to end on a tiny model: fine-tune, answer, save, score
# ---------------------------------------------------------------------------------------


def test_end_to_end_on_a_tiny_model(instruction_data, tokenizer, tmp_path):
    torch.manual_seed(123)
    # A tiny model but GPT-2's real vocabulary: the output layer is most of the work.
    model = GPTModel(GPTConfig(context_length=128, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0))
    train_data, val_data = instruction_data[:10], instruction_data[10:12]
    train_loader = create_instruction_dataloader(train_data, tokenizer, batch_size=5)
    val_loader = create_instruction_dataloader(val_data, tokenizer, batch_size=2, shuffle=False, drop_last=False)

    val_loss_before = calc_loss_loader(val_loader, model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    history = train_model_simple(
        model,
        train_loader,
        val_loader,
        optimizer,
        "cpu",
        num_epochs=1,
        eval_freq=100,
        eval_iter=1,
        start_context=None,
        tokenizer=tokenizer,
        show_progress=False,
        print_samples=False,
    )
    assert len(history.learning_rates) == 2  # 10 examples, batches of 5
    assert history.val_losses[0] < val_loss_before  # the shared prompt template is learnt first

    entries = val_data
    responses = generate_responses(model, tokenizer, entries, "cpu", max_new_tokens=5, show_progress=False)
    assert [set(r) for r in responses] == [{"instruction", "input", "output", "model_response"}] * 2
    assert all("model_response" not in entry for entry in entries)  # the inputs are not changed
    # The response is the greedy continuation of the prompt, without the prompt.
    prompt = format_input(entries[0])
    token_ids = generate(model, text_to_token_ids(prompt, tokenizer), max_new_tokens=5, eos_id=PAD_TOKEN_ID)
    assert responses[0]["model_response"] == extract_response(token_ids_to_text(token_ids, tokenizer), prompt)
    assert model.training  # put back in training mode

    path = save_responses(responses, tmp_path / "instruction-data-with-response.json")
    assert path.read_text().startswith('[\n    {\n        "instruction": ')  # indent 4, as the book
    assert load_responses(path) == responses
    assert json.loads(path.read_text()) == responses
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    report = score_responses(load_responses(path))
    assert len(report.scores) == 2 and all(0.0 <= score <= 100.0 for score in report.scores)
    assert report.scores == [100 * rouge_l_f1(r["model_response"], r["output"]) for r in responses]
