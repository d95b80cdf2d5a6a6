"""The feedback of the exercise sets: typical mistakes fail a VISIBLE check with a message that
names the mistake, and correct alternatives pass.

Each case runs one exercise as a learner would: the notebook's setup cell, then the learner's
version of the solution cell, then the visible part of the exercise's checks cell (what the
learner sees before grading), in a fresh namespace in this process: no kernel, a second or
less per case. The checks cells are read from the solutions notebooks, so these tests follow
any change to them.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
import warnings
from functools import cache
from pathlib import Path

import nbformat
import pytest

from course_tools.checks import CheckFailed

ROOT = Path(__file__).resolve().parent.parent
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"


@cache
def notebook(chapter: str):
    return nbformat.read(ROOT / "solutions" / chapter / f"{chapter}_exercises.ipynb", as_version=4)


def cell(chapter: str, grade_id_prefix: str, suffix: str = "") -> str:
    for c in notebook(chapter).cells:
        grade_id = c.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id.startswith(grade_id_prefix) and grade_id.endswith(suffix):
            return c.source
    raise LookupError(f"{chapter}: no cell whose grade_id starts with {grade_id_prefix!r} and ends with {suffix!r}")


def solution_of(chapter: str, exercise: int) -> str:
    """The reference solution of an exercise, as a learner would type it (no nbgrader markers)."""
    source = cell(chapter, f"ex{exercise}_", "_solution")
    return "\n".join(
        line for line in source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    )


def run_checks(chapter: str, exercise: int, solution: str, hidden: bool = False) -> str | None:
    """Run the setup cell, ``solution`` and the checks of exercise ``exercise`` (the visible
    ones; all of them with ``hidden``). None when they pass, else the CheckFailed message."""
    checks = cell(chapter, f"ex{exercise}_", "_tests")
    if not hidden:
        checks = checks.partition(BEGIN_HIDDEN)[0]
    namespace = {"__name__": "__main__"}
    show = warnings.showwarning  # the setup cell prints warnings on stdout: restore pytest's hook after
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell(chapter, "setup"), f"<{chapter} setup>", "exec"), namespace)
            exec(compile(textwrap.dedent(solution), f"<{chapter} exercise {exercise}>", "exec"), namespace)
            exec(compile(checks, f"<{chapter} exercise {exercise} checks>", "exec"), namespace)
    except CheckFailed as failure:
        return str(failure)
    finally:
        warnings.showwarning = show
    return None


def fails_with(chapter: str, exercise: int, solution: str, *phrases: str) -> None:
    message = run_checks(chapter, exercise, solution)
    assert message is not None, f"{chapter} exercise {exercise}: the visible checks accept this wrong solution"
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} is not in the message: {message}"


def passes(chapter: str, exercise: int, solution: str) -> None:
    for hidden in (False, True):
        message = run_checks(chapter, exercise, solution, hidden=hidden)
        assert message is None, f"{chapter} exercise {exercise} rejects a correct alternative: {message}"


def test_the_harness_runs_the_reference_solutions_and_rejects_the_stub():
    assert run_checks("ch03", 1, solution_of("ch03", 1), hidden=True) is None
    stub = "def attention_scores(inputs, query):\n    raise NotImplementedError()\n"
    with pytest.raises(NotImplementedError):
        run_checks("ch03", 1, stub)


# --- chapter 2 -----------------------------------------------------------------------------

EMBEDDING_WITH_A_BUFFER = """
class InputEmbedding(nn.Module):
    def __init__(self, vocab_size, context_length, emb_dim):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, emb_dim)
        self.pos_emb = nn.Embedding(context_length, emb_dim)
        self.register_buffer("positions", torch.arange(context_length))

    def forward(self, idx):
        return self.tok_emb(idx) + self.pos_emb(self.positions[: idx.shape[1]])
"""


def test_ch02_ex6_an_extra_buffer_is_accepted():
    passes("ch02", 6, EMBEDDING_WITH_A_BUFFER)


def test_ch02_ex6_other_layer_names_get_a_clear_message():
    renamed = EMBEDDING_WITH_A_BUFFER.replace("tok_emb", "token_embedding")
    fails_with("ch02", 6, renamed, "'token_embedding.weight'", "self.tok_emb and self.pos_emb")


DATASET = solution_of("ch02", 7).split("def create_dataloader_v1")[0]
LOADER_HEAD = """
def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
                         drop_last=True, num_workers=0, tokenizer=None):
    tokenizer = tokenizer or tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
"""


def test_ch02_ex7_encoding_without_allowed_special_fails_visibly():
    wrong = DATASET.replace('tokenizer.encode(txt, allowed_special={"<|endoftext|>"})', "tokenizer.encode(txt)")
    assert wrong != DATASET
    correct_loader = LOADER_HEAD + "    return DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last)\n"
    fails_with("ch02", 7, wrong + correct_loader, "allowed_special")


def test_ch02_ex7_ignoring_shuffle_fails_visibly():
    loader = LOADER_HEAD + "    return DataLoader(dataset, batch_size, drop_last=drop_last)\n"
    fails_with("ch02", 7, DATASET + loader, "shuffle=True by default")
    loader = LOADER_HEAD + "    return DataLoader(dataset, batch_size, shuffle=True, drop_last=drop_last)\n"
    fails_with("ch02", 7, DATASET + loader, "pass shuffle on to the DataLoader")


def test_ch02_ex7_ignoring_drop_last_fails_visibly():
    loader = LOADER_HEAD + "    return DataLoader(dataset, batch_size, shuffle=shuffle)\n"
    fails_with("ch02", 7, DATASET + loader, "drop_last=True by default")
    loader = LOADER_HEAD + "    return DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=True)\n"
    fails_with("ch02", 7, DATASET + loader, "pass drop_last on to the DataLoader")


def test_ch02_ex7_a_dataset_of_slices_with_positional_loader_arguments_passes():
    alternative = (
        """
class GPTDatasetV1(Dataset):
    def __init__(self, txt, tokenizer, max_length, stride):
        self.ids = torch.tensor(tokenizer.encode(txt, allowed_special={"<|endoftext|>"}))
        self.starts = range(0, len(self.ids) - max_length, stride)
        self.max_length = max_length

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        start = self.starts[i]
        return self.ids[start : start + self.max_length], self.ids[start + 1 : start + self.max_length + 1]
"""
        + LOADER_HEAD
        + "    return DataLoader(dataset, batch_size, shuffle, drop_last=drop_last, num_workers=num_workers)\n"
    )
    passes("ch02", 7, alternative)


TRAIN_BPE = solution_of("ch02", 8)


def test_ch02_ex8_a_wrong_tie_break_gets_a_hint_about_ties():
    wrong = TRAIN_BPE.replace(
        "pair = max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))", "pair = max(counts, key=counts.get)"
    )
    assert wrong != TRAIN_BPE
    fails_with(
        "ch02", 8, wrong, "a tie goes to the smallest pair", "max(counts, key=counts.get) takes the pair seen first"
    )


def test_ch02_ex8_the_first_visible_example_has_no_tie_and_catches_a_wrong_choice():
    wrong = TRAIN_BPE.replace(
        "pair = max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))",
        "pair = min(counts, key=lambda pair: (counts[pair], pair))",
    )
    fails_with("ch02", 8, wrong, "train_bpe('aaaaaaabababab', 259)", "(no ties in this text)")


# --- chapter 3 -----------------------------------------------------------------------------


def test_ch03_ex2_a_list_of_the_two_tensors_is_accepted():
    alternative = """
def simple_self_attention(inputs):
    weights = torch.softmax(inputs @ inputs.T, dim=-1)
    return [weights, weights @ inputs]
"""
    passes("ch03", 2, alternative)


RENORMALIZE = solution_of("ch03", 4).split("def renormalize_causal")[1]


@pytest.mark.parametrize(
    "masking",
    [
        # tril, then -inf added with a mask multiplied by -inf: 0 * -inf is NaN everywhere below the diagonal
        "torch.tril(attn_scores) + torch.triu(torch.ones(n, n), diagonal=1) * -torch.inf",
        # tril, then -inf where the score is 0: a real score of 0 is masked too, a row of zeros becomes NaN
        "torch.tril(attn_scores).masked_fill(torch.tril(attn_scores) == 0, -torch.inf)",
    ],
    ids=["mask-times-inf", "fill-where-zero"],
)
def test_ch03_ex4_tril_then_inf_says_why_the_weights_are_nan(masking):
    wrong = f"""
def causal_attention_weights(attn_scores):
    n = attn_scores.shape[-1]
    return torch.softmax({masking}, dim=-1)

def renormalize_causal{RENORMALIZE}"""
    fails_with("ch03", 4, wrong, "contains NaN", "0 * inf is NaN", "Mask by position, not by value")


def test_ch03_ex5_a_merge_without_contiguous_fails_visibly_and_reshape_passes():
    split = solution_of("ch03", 5).split("def merge_heads")[0]
    without_contiguous = (
        split
        + """
def merge_heads(x):
    b, num_heads, num_tokens, head_dim = x.shape
    return x.transpose(1, 2).view(b, num_tokens, num_heads * head_dim)
"""
    )
    fails_with("ch03", 5, without_contiguous, "raised RuntimeError", "call .contiguous() before .view(...)")
    with_reshape = without_contiguous.replace(".view(b, num_tokens", ".reshape(b, num_tokens")
    passes("ch03", 5, with_reshape)


MHA = solution_of("ch03", 6)


def test_ch03_ex6_functional_dropout_that_stays_on_in_eval_mode_fails_visibly():
    wrong = MHA.replace(
        "attn_weights = self.dropout(attn_weights)", "attn_weights = F.dropout(attn_weights, p=self.dropout.p)"
    )
    assert wrong != MHA
    fails_with("ch03", 6, wrong, ".eval()", "F.dropout(x, p) keeps dropping in eval mode")
    right = MHA.replace(
        "attn_weights = self.dropout(attn_weights)",
        "attn_weights = F.dropout(attn_weights, p=self.dropout.p, training=self.training)",
    )
    passes("ch03", 6, right)


def test_ch03_ex6_dropout_in_the_wrong_place_fails_visibly():
    wrong = MHA.replace("attn_weights = self.dropout(attn_weights)", "").replace(
        "return self.out_proj(context)", "return self.dropout(self.out_proj(context))"
    )
    fails_with("ch03", 6, wrong, "in training mode", "to the attention weights right after the softmax")


# --- chapter 4 -----------------------------------------------------------------------------

LAYER_NORM = solution_of("ch04", 1)


def test_ch04_ex1_eps_outside_the_square_root_is_named():
    wrong = LAYER_NORM.replace("torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)")
    assert wrong != LAYER_NORM
    fails_with(
        "ch04",
        1,
        wrong,
        "tiny variance",
        "it matches (x - mean) / (torch.sqrt(var) + eps)",
        "eps belongs inside the square root",
    )


def test_ch04_ex1_a_missing_eps_is_named():
    wrong = LAYER_NORM.replace("torch.sqrt(var + self.eps)", "torch.sqrt(var)")
    fails_with("ch04", 1, wrong, "without eps: add eps inside the square root")


def test_ch04_ex1_rsqrt_and_a_manual_variance_pass():
    alternative = LAYER_NORM.replace(
        "var = x.var(dim=-1, keepdim=True, unbiased=False)", "var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)"
    ).replace("norm_x = (x - mean) / torch.sqrt(var + self.eps)", "norm_x = (x - mean) * torch.rsqrt(var + self.eps)")
    assert "rsqrt" in alternative and "** 2" in alternative
    passes("ch04", 1, alternative)


BLOCK = solution_of("ch04", 4)


def test_ch04_ex4_functional_dropout_that_stays_on_in_eval_mode_fails_visibly():
    wrong = (
        BLOCK.replace("self.drop_shortcut(self.att(", "F.dropout(self.att(")
        .replace("self.drop_shortcut(self.ff(", "F.dropout(self.ff(")
        .replace("self.norm1(x)))", "self.norm1(x)), p=self.drop_shortcut.p)")
        .replace("self.norm2(x)))", "self.norm2(x)), p=self.drop_shortcut.p)")
    )
    assert wrong.count("F.dropout") == 2 and "p=self.drop_shortcut.p" in wrong
    fails_with("ch04", 4, wrong, ".eval()", "F.dropout(x, p) keeps dropping in eval mode")


def test_ch04_ex4_dropout_on_the_sum_fails_visibly():
    wrong = BLOCK.replace("return x + shortcut", "return self.drop_shortcut(x + shortcut)")
    fails_with("ch04", 4, wrong, "in training mode", "not to the sum")


GPT = solution_of("ch04", 6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("x = self.drop_emb(tok_embeds + pos_embeds)", "x = tok_embeds + pos_embeds"),
            "the dropout of the embeddings is missing: apply self.drop_emb",
        ),
        (("x = self.final_norm(x)", ""), "the final layer norm is missing"),
        (
            ("x = self.drop_emb(tok_embeds + pos_embeds)", "x = self.drop_emb(tok_embeds)"),
            "the position embeddings are missing",
        ),
    ],
    ids=["no-drop_emb", "no-final_norm", "no-pos_emb"],
)
def test_ch04_ex6_a_missing_step_is_named(change, message):
    wrong = GPT.replace(*change)
    assert wrong != GPT
    fails_with("ch04", 6, wrong, message)


# --- every reference solution passes all its checks, visible and hidden -----------------------


def exercise_numbers(chapter: str) -> list[int]:
    ids = [c.metadata.get("nbgrader", {}).get("grade_id", "") for c in notebook(chapter).cells]
    return [int(i.split("_")[0][2:]) for i in ids if i.startswith("ex") and i.endswith("_tests")]


@pytest.mark.parametrize(
    ("chapter", "exercise"),
    [(chapter, n) for chapter in ("ch02", "ch03", "ch04") for n in exercise_numbers(chapter)],
)
def test_the_reference_solution_passes_every_check(chapter, exercise):
    assert run_checks(chapter, exercise, solution_of(chapter, exercise), hidden=True) is None


# --- the exercises added from the printed book, and the prediction questions -------------------


def test_ch03_ex8_heads_in_a_python_list_get_a_clear_message():
    wrong = solution_of("ch03", 8).replace("self.heads = nn.ModuleList(", "self.heads = list(")
    fails_with("ch03", 8, wrong, "should be an nn.ModuleList of 2 CausalAttention modules")


def test_ch03_ex8_d_out_for_2d_must_give_two_features():
    wrong = solution_of("ch03", 8).replace("return 1  #", "return 2  #")
    assert wrong != solution_of("ch03", 8)
    fails_with("ch03", 8, wrong, "d_out=d_out_for_2d()=2", "num_heads * d_out = 2")


def test_ch04_ex8_counting_the_whole_block_fails_visibly():
    wrong = """
def count_sublayer_parameters(block):
    total = sum(p.numel() for p in block.parameters())
    return total, total
"""
    fails_with("ch04", 8, wrong, "the attention parameters of a GPT-2 small block", "block.att.parameters()")


def test_ch04_ex9_a_rate_left_unchanged_or_unchecked_fails_visibly():
    solution = solution_of("ch04", 9)
    no_shortcut = solution.replace("block.drop_shortcut.p = drop_rate_shortcut", "pass")
    fails_with("ch04", 9, no_shortcut, "block.drop_shortcut.p of each block")
    unchecked = solution.replace("raise ValueError", "pass  #")
    fails_with("ch04", 9, unchecked, "should raise ValueError: drop_rate_emb is outside [0, 1)")
    checked_late = solution.replace(
        "for name, rate in rates.items():", "model.drop_emb.p = drop_rate_emb\n    for name, rate in rates.items():"
    )
    fails_with("ch04", 9, checked_late, "check every rate before changing any")


def test_ch04_ex10_counting_frozen_parameters_fails_visibly():
    wrong = solution_of("ch04", 10).replace(" if p.requires_grad", "")
    fails_with("ch04", 10, wrong, "after freezing the first layer", "p.requires_grad")


def test_ch04_ex10_a_softmax_at_the_end_fails_visibly():
    wrong = solution_of("ch04", 10).replace("return self.layers(x)", "return torch.softmax(self.layers(x), dim=-1)")
    fails_with("ch04", 10, wrong, "no softmax at the end")


def with_answer(chapter: str, exercise: int, variable: str, value: str) -> str:
    """The solution of a prediction exercise with one answer changed (just before the return)."""
    solution = solution_of(chapter, exercise)
    assert solution.count("\n    return ") == 1
    return solution.replace("\n    return ", f"\n    {variable} = {value}\n    return ")


@pytest.mark.parametrize(
    ("chapter", "exercise", "variable", "bad", "message"),
    [
        ("ch02", 9, "answer_endoftext_id", "'50256'", "answer_endoftext_id should be an int"),
        ("ch02", 9, "answer_unknown_word", "'B'", "one of the strings 'a', 'b' or 'c'"),
        ("ch03", 9, "answer_first_token_weight", "2.0", "an attention weight is between 0 and 1"),
        ("ch04", 11, "answer_logits_shape", "(2, 4)", "a tuple of 3 ints"),
    ],
)
def test_prediction_answers_of_the_wrong_kind_fail_visibly(chapter, exercise, variable, bad, message):
    fails_with(chapter, exercise, with_answer(chapter, exercise, variable, bad), message)


@pytest.mark.parametrize(
    ("chapter", "exercise", "variable", "wrong"),
    [
        ("ch02", 9, "answer_num_pairs", "4"),
        ("ch03", 9, "answer_mha_parameters", "4 * 768 * 768"),
        ("ch04", 11, "answer_out_head_parameters", "768 * 50257 + 50257"),
    ],
)
def test_a_wrong_prediction_passes_the_visible_checks_and_fails_grading(chapter, exercise, variable, wrong):
    solution = with_answer(chapter, exercise, variable, wrong)
    assert run_checks(chapter, exercise, solution) is None
    assert variable in run_checks(chapter, exercise, solution, hidden=True)


def test_a_prediction_may_be_written_as_an_expression_or_a_list():
    passes("ch04", 11, with_answer("ch04", 11, "answer_logits_shape", "[2, 4, 50257]"))
    passes("ch03", 9, with_answer("ch03", 9, "answer_scale", "64 ** 0.5"))
    passes("ch03", 9, with_answer("ch03", 9, "answer_first_token_weight", "1"))


def test_an_unanswered_prediction_counts_as_not_attempted():
    # nbgrader's stub: the None answers, then raise NotImplementedError() in place of the solution.
    for chapter, exercise in [("ch02", 9), ("ch03", 9), ("ch04", 11)]:
        solution = solution_of(chapter, exercise)
        stub = solution[: solution.index("    answer_")] + "    raise NotImplementedError()\n"
        with pytest.raises(NotImplementedError):
            run_checks(chapter, exercise, stub)
