"""course_tools.checks: the exact messages of every check, and the reference-impl guard."""

from __future__ import annotations

import functools
import sys
import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

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
from reference_impl import tokenizer as reference_tokenizer
from reference_impl.model import GELU as G  # an aliased import: the guard must still see it


def failure(check, *args, **kwargs) -> str:
    """The message of the CheckFailed that ``check(*args, **kwargs)`` raises."""
    with pytest.raises(CheckFailed) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)


# --- expect_type / expect_true ----------------------------------------------------------


def test_expect_type():
    expect_type([1], list, "ids")
    expect_type((1,), (list, tuple), "ids")
    assert failure(expect_type, (1, 2), list, "ids") == "ids should be a list, got tuple"
    assert failure(expect_type, "12", int, "count") == "count should be an int, got str"
    assert failure(expect_type, "12", (list, tuple), "ids") == "ids should be a list or a tuple, got str"
    assert failure(expect_type, [1.0], torch.Tensor, "logits") == "logits should be a torch.Tensor, got list"
    assert failure(expect_type, 3, nn.Module, "layer") == "layer should be a torch.nn.Module, got int"


def test_expect_true():
    expect_true(1 + 1 == 2, "never shown")
    assert (
        failure(expect_true, [], "the vocabulary is empty: did you return it?")
        == "the vocabulary is empty: did you return it?"
    )


# --- expect_shape -----------------------------------------------------------------------


def test_expect_shape_message_with_and_without_hint():
    expect_shape(torch.zeros(2, 4, 6), (2, 4, 6))
    expect_shape(torch.zeros(2, 4, 6), torch.Size([2, 4, 6]))
    assert (
        failure(expect_shape, torch.zeros(2, 6, 4), (2, 4, 6), hint="did you transpose back after merging heads?")
        == "output shape (2, 6, 4), expected (2, 4, 6): did you transpose back after merging heads?"
    )
    assert failure(expect_shape, torch.zeros(5), [5, 1], "ids") == "ids shape (5,), expected (5, 1)"
    assert failure(expect_shape, [[1, 2]], (1, 2), "ids") == "ids should be a tensor of shape (1, 2), got list"


# --- expect_close -----------------------------------------------------------------------


def test_expect_close_passes_within_tolerance():
    expected = torch.tensor([1.0, -2.0, 1000.0])
    expect_close(expected + torch.tensor([9e-7, -9e-7, 0.009]), expected)  # atol 1e-6 + rtol 1e-5 * |x|
    expect_close(expected.double(), expected)  # float64 against float32: the same kind
    expect_close(expected.clone().requires_grad_(), expected)
    expect_close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))  # NaN where the reference has NaN
    expect_close(torch.tensor([1.05]), torch.tensor([1.0]), atol=0.1)
    expect_close(torch.tensor([[1.0, 2.0]]), [[1.0, 2.0]])  # expected may be a nested list


def test_expect_close_message_gives_the_largest_difference_and_where():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[0, 1] = 0.5
    actual[1, 2] = -2.0
    assert failure(expect_close, actual, expected, "context vectors", hint="did you scale by sqrt(d_k)?") == (
        "context vectors differs from the expected values at 2 of 6 positions; the largest difference is 2 "
        "at [1, 2] (got -2, expected 0; atol=1e-06, rtol=1e-05): did you scale by sqrt(d_k)?"
    )
    just_outside = torch.tensor([1.0 + 3e-5])
    assert failure(expect_close, just_outside, torch.tensor([1.0])) == (
        "output differs from the expected values at 1 of 1 positions; the largest difference is 3e-05 "
        "at [0] (got 1.00003, expected 1; atol=1e-06, rtol=1e-05)"
    )
    assert failure(expect_close, torch.tensor(2.0), torch.tensor(1.0), "loss") == (
        "loss differs from the expected values at 1 of 1 positions; the largest difference is 1 "
        "at the only position (got 2, expected 1; atol=1e-06, rtol=1e-05)"
    )


def test_expect_close_reports_nan_as_the_worst_position():
    actual = torch.tensor([1.5, float("nan")])
    assert failure(expect_close, actual, torch.tensor([1.0, 1.0]), "probas") == (
        "probas differs from the expected values at 2 of 2 positions; the largest difference is nan "
        "at [1] (got nan, expected 1; atol=1e-06, rtol=1e-05)"
    )


def test_expect_close_checks_type_then_shape_then_dtype():
    expected = torch.zeros(2, 3)
    assert failure(expect_close, [[0.0] * 3] * 2, expected, "logits") == "logits should be a torch.Tensor, got list"
    assert failure(expect_close, torch.zeros(3, 2), expected, "logits", hint="(batch, vocab)") == (
        "logits shape (3, 2), expected (2, 3): (batch, vocab)"
    )
    assert failure(expect_close, torch.zeros(2, 3, dtype=torch.long), expected, "logits") == (
        "logits has dtype torch.int64, expected torch.float32"
    )


# --- expect_equal -----------------------------------------------------------------------


def test_expect_equal_passes_on_equal_values():
    expect_equal(3, 3)
    expect_equal("abc", "abc")
    expect_equal([1, [2, 3]], [1, [2, 3]])
    expect_equal((1, 2), [1, 2])  # a tuple of ids is as good as a list
    expect_equal({"a": [1]}, {"a": [1]})
    expect_equal(torch.tensor([[1, 2]]), torch.tensor([[1, 2]]))
    expect_equal(torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1, 2]))  # both integer tensors
    expect_equal([torch.tensor([1]), torch.tensor([2])], (torch.tensor([1]), torch.tensor([2])))


def test_expect_equal_scalars_and_kinds():
    assert failure(expect_equal, 1285, 1286, "len(dataset)") == "len(dataset) is 1285, expected 1286"
    assert failure(expect_equal, 3.0, 3, "count") == "count should be an int, got float"
    assert failure(expect_equal, True, 1, "count") == "count should be an int, got bool"
    assert (
        failure(expect_equal, None, 0, "count", hint="did you return it?")
        == "count should be an int, got NoneType: did you return it?"
    )


def test_expect_equal_lists_name_the_first_differing_position():
    assert failure(expect_equal, [1, 2, 3], [1, 2, 4], "ids") == "ids[2] is 3, expected 4"
    assert failure(expect_equal, [[1, 2], [3, 4]], [[1, 2], [3, 5]], "pairs") == "pairs[1][1] is 4, expected 5"
    assert failure(expect_equal, [1, 9, 3], [1, 2], "ids") == "ids[1] is 9, expected 2 (ids has 3 items, expected 2)"
    assert (
        failure(expect_equal, [1, 2, 3], [1, 2], "ids")
        == "ids has 3 items, expected 2: the first extra one is ids[2] = 3"
    )
    assert (
        failure(expect_equal, [1], [1, 2], "ids") == "ids has 1 items, expected 2: the first missing one is ids[1] = 2"
    )
    assert failure(expect_equal, "1 2", [1, 2], "ids") == "ids should be a list, got str"


def test_expect_equal_strings_name_the_first_differing_character():
    assert failure(expect_equal, "Hello world", "Hello, world", "decoded") == (
        "decoded differs at character 5: got ' world', expected ', world'"
    )
    assert failure(expect_equal, "abc", "abcdef", "decoded") == (
        "decoded differs at character 3: got the end of the text, expected 'def'"
    )
    long_text = "x" * 50
    assert (
        failure(expect_equal, long_text + "!", long_text + "?")
        == "output differs at character 50: got '!', expected '?'"
    )
    assert failure(expect_equal, "a" + "b" * 30, "a" + "c" * 30) == (
        "output differs at character 1: got 'bbbbbbbbbbbbbbbbbbbb'..., expected 'cccccccccccccccccccc'..."
    )
    assert failure(expect_equal, ["a"], "a", "text") == "text should be a str, got list"


def test_expect_equal_dicts_name_missing_extra_and_differing_keys():
    expected = {"a": 0, "b": 1, "<|unk|>": 2}
    assert failure(expect_equal, {"a": 0, "b": 1}, expected, "vocab") == "vocab is missing 1 of 3 keys, e.g. '<|unk|>'"
    assert failure(expect_equal, {**expected, "c": 3}, expected, "vocab") == "vocab has 1 unexpected keys, e.g. 'c'"
    assert failure(expect_equal, {"a": 0, "b": 2, "<|unk|>": 1}, expected, "vocab") == "vocab['b'] is 2, expected 1"
    assert failure(expect_equal, [("a", 0)], expected, "vocab") == "vocab should be a dict, got list"


def test_expect_equal_integer_tensors():
    expected = torch.tensor([[40, 367], [2885, 1464]])
    assert failure(expect_equal, torch.tensor([[40, 367], [2885, 1807]]), expected, "inputs") == (
        "inputs differs at 1 of 4 positions; the first is [1, 1]: got 1807, expected 1464"
    )
    assert failure(expect_equal, torch.tensor([[41, 367], [2885, 1807]]), expected, "inputs", hint="shifted?") == (
        "inputs differs at 2 of 4 positions; the first is [0, 0]: got 41, expected 40: shifted?"
    )
    assert failure(expect_equal, expected.T.reshape(4), expected, "inputs") == "inputs shape (4,), expected (2, 2)"
    assert (
        failure(expect_equal, expected.float(), expected, "inputs")
        == "inputs has dtype torch.float32, expected torch.int64"
    )
    assert failure(expect_equal, expected.tolist(), expected, "inputs") == "inputs should be a torch.Tensor, got list"
    assert failure(
        expect_equal, (torch.tensor([1]), torch.tensor([3])), [torch.tensor([1]), torch.tensor([2])], "item"
    ) == ("item[1] differs at 1 of 1 positions; the first is [0]: got 3, expected 2")


# --- forbid_reference_impl --------------------------------------------------------------


def my_gelu(x):
    return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))


def test_forbid_allows_torch_and_the_learners_own_code():
    x = torch.linspace(-3, 3, 7)
    with forbid_reference_impl():
        mine = my_gelu(x)
        layer = nn.Linear(7, 2)
        layer(mine)
        F.gelu(x, approximate="tanh")
        expect_close(mine, F.gelu(x, approximate="tanh"), atol=1e-6)  # the checks themselves are allowed
    assert sys.getprofile() is None


def test_forbid_catches_a_direct_call():
    with pytest.raises(CheckFailed) as info:
        with forbid_reference_impl():
            reference_tokenizer.build_vocab("a b")
    assert str(info.value) == "your code calls reference_impl.tokenizer.build_vocab instead of implementing it"


def test_forbid_catches_an_aliased_import():
    with pytest.raises(CheckFailed) as info:
        with forbid_reference_impl():
            G()(torch.zeros(3))
    assert str(info.value) == "your code calls reference_impl.model.GELU.forward instead of implementing it"


def test_forbid_catches_a_subclass_that_calls_super():
    class MyTokenizer(reference_tokenizer.SimpleTokenizerV2):
        def encode(self, text):
            return super().encode(text)

    tokenizer = MyTokenizer(reference_tokenizer.build_vocab("the cat"))  # outside the block: allowed
    with pytest.raises(
        CheckFailed, match=r"your code calls reference_impl\.tokenizer\.SimpleTokenizerV\d\.encode instead"
    ):
        with forbid_reference_impl():
            tokenizer.encode("the dog")


def test_forbid_still_fails_when_the_learner_swallows_the_error():
    def sneaky(text):
        try:
            return reference_tokenizer.build_vocab(text)
        except Exception:
            return {}

    with pytest.raises(
        CheckFailed, match="your code calls reference_impl.tokenizer.build_vocab instead of implementing it"
    ):
        with forbid_reference_impl():
            sneaky("a b")
    assert sys.getprofile() is None


def test_forbid_lets_through_what_allowed_names_and_what_that_calls():
    with forbid_reference_impl(allowed=("reference_impl.tokenizer.merge",)):
        assert reference_tokenizer.merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    with forbid_reference_impl(allowed=(reference_tokenizer.get_pair_counts, reference_tokenizer.merge)):
        reference_tokenizer.get_pair_counts([1, 2, 1])
    with forbid_reference_impl(allowed="reference_impl.tokenizer"):  # a module allows all of it
        reference_tokenizer.BPETokenizer.train("aaab", 258, special_tokens=())
    with pytest.raises(CheckFailed, match="reference_impl.tokenizer.get_pair_counts"):
        with forbid_reference_impl(allowed=(reference_tokenizer.merge,)):
            reference_tokenizer.get_pair_counts([1, 2, 1])


def test_forbid_watches_threads_started_inside_the_block():
    errors = []

    def worker():
        try:
            reference_tokenizer.build_vocab("a b")
        except CheckFailed as error:
            errors.append(str(error))

    with pytest.raises(CheckFailed, match="reference_impl.tokenizer.build_vocab"):
        with forbid_reference_impl():
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
    assert errors == ["your code calls reference_impl.tokenizer.build_vocab instead of implementing it"]


def test_forbid_restores_the_previous_profile_functions_even_on_exceptions():
    def previous(frame, event, arg):
        pass

    sys.setprofile(previous)
    threading.setprofile(previous)
    try:
        with pytest.raises(ZeroDivisionError):
            with forbid_reference_impl():
                _ = 1 / 0
        assert sys.getprofile() is previous and threading.getprofile() is previous
        with pytest.raises(CheckFailed):
            with forbid_reference_impl():
                reference_tokenizer.build_vocab("a")
        assert sys.getprofile() is previous and threading.getprofile() is previous
        with forbid_reference_impl():
            pass
        assert sys.getprofile() is previous and threading.getprofile() is previous
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def test_forbid_fails_when_the_learners_code_turns_the_watch_off():
    def evasive():
        sys.setprofile(None)
        return reference_tokenizer.build_vocab("a b")

    with pytest.raises(CheckFailed) as info:
        with forbid_reference_impl():
            evasive()
    assert str(info.value) == "your code turned off the checks' watch on reference_impl (sys.setprofile)"
    assert sys.getprofile() is None


def test_forbid_rejects_an_allowed_entry_it_cannot_name():
    with pytest.raises(TypeError, match="allowed takes qualified names"):
        forbid_reference_impl(allowed=(3,))


# --- expect_own_implementation ----------------------------------------------------------


def test_expect_own_implementation_accepts_the_learners_code_and_torch():
    class MyTokenizer:
        def __init__(self, vocab):
            self.vocab = vocab

    class MyModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

    expect_own_implementation(MyTokenizer({"a": 0}))
    expect_own_implementation(MyTokenizer)
    expect_own_implementation(MyModel())
    expect_own_implementation(my_gelu)
    expect_own_implementation(functools.partial(my_gelu))


def test_expect_own_implementation_rejects_reference_objects():
    vocab = reference_tokenizer.build_vocab("the cat")
    tail = ": write your own implementation instead of using the reference one"
    assert failure(expect_own_implementation, reference_tokenizer.merge, "merge") == (
        "merge is reference_impl.tokenizer.merge" + tail
    )
    assert failure(expect_own_implementation, reference_tokenizer.SimpleTokenizerV2(vocab), "tokenizer") == (
        "tokenizer is an instance of reference_impl.tokenizer.SimpleTokenizerV2" + tail
    )

    class Subclass(reference_tokenizer.SimpleTokenizerV2):
        pass

    assert failure(expect_own_implementation, Subclass, "SimpleTokenizerV2") == (
        "SimpleTokenizerV2 subclasses reference_impl.tokenizer.SimpleTokenizerV2" + tail
    )

    class Wrapper:
        def __init__(self):
            self.inner = reference_tokenizer.SimpleTokenizerV2(vocab)

    assert failure(expect_own_implementation, Wrapper(), "tokenizer") == (
        "tokenizer wraps (in .inner) an instance of reference_impl.tokenizer.SimpleTokenizerV2" + tail
    )
    assert failure(expect_own_implementation, functools.partial(reference_tokenizer.merge, new_id=3), "merge") == (
        "merge wraps (in .func) reference_impl.tokenizer.merge" + tail
    )

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = G()

    assert failure(expect_own_implementation, Block(), "block") == (
        "block wraps (in .act) an instance of reference_impl.model.GELU" + tail
    )

    def make_closure():
        build = reference_tokenizer.build_vocab

        def my_build_vocab(text):
            return build(text)

        return my_build_vocab

    assert failure(expect_own_implementation, make_closure(), "build_vocab") == (
        "build_vocab wraps (in closure variable build) reference_impl.tokenizer.build_vocab" + tail
    )


# --- show_warnings_on_stdout ------------------------------------------------------------


def test_show_warnings_on_stdout(monkeypatch, capsys):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    show_warnings_on_stdout()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning("careful", UserWarning, "exercise.py", 3)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == "exercise.py:3: UserWarning: careful\n"


# --- run_checked, expect_raises ----------------------------------------------------------------


def test_run_checked_returns_the_result_and_turns_an_error_into_a_named_failed_check():
    assert run_checked(lambda x: x + 1, 1, what="f(1)") == 2
    with pytest.raises(CheckFailed, match=r"^f\(0\) raised ZeroDivisionError: division by zero: divide by len\(x\)$"):
        run_checked(lambda x: 1 / x, 0, what="f(0)", hint="divide by len(x)")
    with pytest.raises(NotImplementedError):  # an unfinished exercise stays unfinished
        run_checked(lambda: (_ for _ in ()).throw(NotImplementedError()), what="f()")
    with pytest.raises(CheckFailed, match="reference_impl.tokenizer.build_vocab instead of implementing it"):
        run_checked(reference_tokenizer.build_vocab, "a b", what="build_vocab('a b')")


def test_expect_raises_wants_exactly_the_error_asked_for():
    def refuse(x):
        if x < 0:
            raise ValueError("negative")
        return x

    expect_raises(ValueError, refuse, -1, what="refuse(-1)")
    with pytest.raises(CheckFailed, match=r"^refuse\(1\) should raise ValueError, but it returned: check x < 0$"):
        expect_raises(ValueError, refuse, 1, what="refuse(1)", hint="check x < 0")
    with pytest.raises(CheckFailed, match=r"^refuse\('a'\) raised TypeError \(.*\), expected ValueError$"):
        expect_raises(ValueError, refuse, "a", what="refuse('a')")
