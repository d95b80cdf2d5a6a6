"""Checks for graded exercises: one helper, short test cells, failures that say what to fix.

An exercise's test cell runs the learner's code under ``forbid_reference_impl()`` (so that
a solution that just calls this package earns nothing), then compares the result with the
reference implementation::

    with forbid_reference_impl():
        out = my_attention(x)
    expect_shape(out, (2, 4, 6), "context vectors", hint="did you transpose back after merging heads?")
    expect_close(out, reference_out, "context vectors")

Every check raises ``CheckFailed`` (an ``AssertionError``) with a one-line message: what is
wrong, where, and (with ``hint``) the likely cause. nbgrader gives a test cell its points
when it runs without an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import numbers
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

__all__ = [
    "CheckFailed",
    "expect_shape",
    "expect_close",
    "expect_equal",
    "expect_type",
    "expect_true",
    "forbid_reference_impl",
    "expect_own_implementation",
    "expect_raises",
    "run_checked",
    "show_warnings_on_stdout",
]

# Calls into the reference package's files count as "using the reference implementation".
# Its folder is found without importing it (importing it would import torch's models and
# more). Both spellings of the folder: as imported, and with links resolved.
PACKAGE = "reference_impl"
_spec = importlib.util.find_spec(PACKAGE)
if _spec is None or not _spec.submodule_search_locations:
    raise ImportError(f"course_tools.checks needs the package {PACKAGE!r}: install the course with `make test`")
_package_dir = list(_spec.submodule_search_locations)[0]
PACKAGE_DIRS = tuple({os.path.abspath(_package_dir) + os.sep, str(Path(_package_dir).resolve()) + os.sep})


class CheckFailed(AssertionError):
    """An exercise check failed; the message says what is wrong and how to fix it."""


# ---------------------------------------------------------------------------------------
# Comparing results
# ---------------------------------------------------------------------------------------


def expect_type(actual, expected_type, what: str = "output") -> None:
    """``actual`` must be an instance of ``expected_type`` (a type or a tuple of types)."""
    __tracebackhide__ = True  # IPython and pytest show the learner's line, not this one
    if not isinstance(actual, expected_type):
        raise CheckFailed(f"{what} should be {_a_type(expected_type)}, got {_type_name(type(actual))}")


def expect_true(condition, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    __tracebackhide__ = True
    if not condition:
        raise CheckFailed(message)


def expect_shape(actual, expected_shape, what: str = "output", hint: str | None = None) -> None:
    """``actual.shape`` must be ``expected_shape``, e.g. ``(2, 4, 6)``."""
    __tracebackhide__ = True
    expected_shape = tuple(expected_shape)
    if not hasattr(actual, "shape"):
        raise CheckFailed(
            _with_hint(f"{what} should be a tensor of shape {expected_shape}, got {_type_name(type(actual))}", hint)
        )
    if tuple(actual.shape) != expected_shape:
        raise CheckFailed(_with_hint(f"{what} shape {tuple(actual.shape)}, expected {expected_shape}", hint))


def expect_close(
    actual,
    expected,
    what: str = "output",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str | None = None,
) -> None:
    """``actual`` must be a tensor of ``expected``'s shape and kind of dtype, with values
    within ``atol + rtol * |expected|`` of it (``torch.isclose``)."""
    __tracebackhide__ = True
    expect_type(actual, torch.Tensor, what)
    expected = torch.as_tensor(expected)
    expect_shape(actual, expected.shape, what, hint)
    _expect_same_dtype_kind(actual, expected, what, hint)

    # Compare in float64 so that the comparison itself adds no rounding error.
    got = actual.detach().cpu().to(torch.float64)
    want = expected.detach().cpu().to(torch.float64)
    close = torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return
    diff = (got - want).abs().nan_to_num(nan=float("inf"))  # a NaN where a number belongs is the worst
    diff[close] = -1.0  # report the worst position among those that fail
    worst = int(diff.argmax())
    index = _unravel(worst, got.shape)
    n_bad = int((~close).sum())
    largest = float((got - want).abs().flatten()[worst])
    raise CheckFailed(
        _with_hint(
            f"{what} differs from the expected values at {n_bad} of {got.numel()} positions; "
            f"the largest difference is {largest:.3g} at {_format_index(index)} "
            f"(got {float(got.flatten()[worst]):.6g}, expected {float(want.flatten()[worst]):.6g}; "
            f"atol={atol:g}, rtol={rtol:g})",
            hint,
        )
    )


def expect_equal(actual, expected, what: str = "output", hint: str | None = None) -> None:
    """``actual`` must equal ``expected`` exactly: ints, strings, lists/tuples, dicts,
    integer tensors (and lists or dicts of them). The message names the first difference."""
    __tracebackhide__ = True
    difference = _first_difference(actual, expected, what)
    if difference is not None:
        raise CheckFailed(_with_hint(difference, hint))


def _first_difference(actual, expected, what: str) -> str | None:
    """A sentence about the first place where ``actual`` and ``expected`` differ, or None."""
    if isinstance(expected, torch.Tensor):
        return _tensor_difference(actual, expected, what)
    if isinstance(expected, str):
        return _string_difference(actual, expected, what)
    if isinstance(expected, Mapping):
        return _mapping_difference(actual, expected, what)
    if isinstance(expected, (list, tuple)):
        return _sequence_difference(actual, expected, what)
    if not _same_kind(actual, expected):
        return f"{what} should be {_a_type(type(expected))}, got {_type_name(type(actual))}"
    if actual != expected:
        return f"{what} is {_short_repr(actual)}, expected {_short_repr(expected)}"
    return None


def _tensor_difference(actual, expected: torch.Tensor, what: str) -> str | None:
    if not isinstance(actual, torch.Tensor):
        return f"{what} should be a torch.Tensor, got {_type_name(type(actual))}"
    if actual.shape != expected.shape:
        return f"{what} shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if _dtype_kind(actual.dtype) != _dtype_kind(expected.dtype):
        return f"{what} has dtype {actual.dtype}, expected {expected.dtype}"
    differ = actual.detach().cpu() != expected.detach().cpu()
    if not bool(differ.any()):
        return None
    first = int(differ.flatten().nonzero()[0])
    index = _unravel(first, actual.shape)
    return (
        f"{what} differs at {int(differ.sum())} of {actual.numel()} positions; the first is "
        f"{_format_index(index)}: got {actual.flatten()[first].item()!r}, expected {expected.flatten()[first].item()!r}"
    )


def _string_difference(actual, expected: str, what: str) -> str | None:
    if not isinstance(actual, str):
        return f"{what} should be a str, got {_type_name(type(actual))}"
    if actual == expected:
        return None
    i = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    return f"{what} differs at character {i}: got {_snippet(actual, i)}, expected {_snippet(expected, i)}"


def _mapping_difference(actual, expected: Mapping, what: str) -> str | None:
    if not isinstance(actual, Mapping):
        return f"{what} should be a dict, got {_type_name(type(actual))}"
    missing = [key for key in expected if key not in actual]
    if missing:
        return f"{what} is missing {len(missing)} of {len(expected)} keys, e.g. {_short_repr(missing[0])}"
    extra = [key for key in actual if key not in expected]
    if extra:
        return f"{what} has {len(extra)} unexpected keys, e.g. {_short_repr(extra[0])}"
    for key, value in expected.items():
        difference = _first_difference(actual[key], value, f"{what}[{_short_repr(key)}]")
        if difference is not None:
            return difference
    return None


def _sequence_difference(actual, expected: Sequence, what: str) -> str | None:
    # A list and a tuple with the same items count as equal: learners use both for ids.
    if not isinstance(actual, (list, tuple)):
        return f"{what} should be {_a_type(type(expected))}, got {_type_name(type(actual))}"
    lengths = "" if len(actual) == len(expected) else f" ({what} has {len(actual)} items, expected {len(expected)})"
    for i, (got, want) in enumerate(zip(actual, expected)):
        difference = _first_difference(got, want, f"{what}[{i}]")
        if difference is not None:
            return difference + lengths
    if len(actual) > len(expected):
        n = len(expected)
        return f"{what} has {len(actual)} items, expected {n}: the first extra one is {what}[{n}] = {_short_repr(actual[n])}"
    if len(actual) < len(expected):
        n = len(actual)
        return f"{what} has {n} items, expected {len(expected)}: the first missing one is {what}[{n}] = {_short_repr(expected[n])}"
    return None


def _same_kind(actual, expected) -> bool:
    """Exact comparison needs the same kind of value: 3 and 3.0 or True and 1 are not the same answer."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool)
    if isinstance(expected, numbers.Integral):
        return isinstance(actual, numbers.Integral)
    if isinstance(expected, numbers.Real):
        return isinstance(actual, numbers.Real)
    if expected is None:
        return actual is None
    return isinstance(actual, type(expected))


def _expect_same_dtype_kind(actual: torch.Tensor, expected: torch.Tensor, what: str, hint: str | None) -> None:
    __tracebackhide__ = True
    if _dtype_kind(actual.dtype) != _dtype_kind(expected.dtype):
        raise CheckFailed(_with_hint(f"{what} has dtype {actual.dtype}, expected {expected.dtype}", hint))


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating point"
    return "integer"


# ---------------------------------------------------------------------------------------
# Running the learner's code
# ---------------------------------------------------------------------------------------


def run_checked(function, *args, what: str, hint: str | None = None, allowed=(), **kwargs):
    """Call the learner's ``function(*args, **kwargs)`` under ``forbid_reference_impl(allowed)``.

    An error in the learner's code becomes a failed check that names the call (``what``) and
    the error; an unfinished exercise (``NotImplementedError``) stays what it is.
    """
    try:
        with forbid_reference_impl(allowed=allowed):
            return function(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:
        raise CheckFailed(_with_hint(f"{what} raised {type(error).__name__}: {error}", hint)) from None


def expect_raises(error_type, function, *args, what: str, hint: str | None = None, **kwargs) -> None:
    """The learner's ``function(*args, **kwargs)`` must raise ``error_type`` (bad input refused)."""
    try:
        with forbid_reference_impl():
            function(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except error_type:
        return
    except Exception as error:
        message = f"{what} raised {type(error).__name__} ({error}), expected {error_type.__name__}"
        raise CheckFailed(_with_hint(message, hint)) from None
    raise CheckFailed(_with_hint(f"{what} should raise {error_type.__name__}, but it returned", hint))


# ---------------------------------------------------------------------------------------
# Catching solutions that call the reference implementation
# ---------------------------------------------------------------------------------------


class forbid_reference_impl:
    """A context manager: any call of a function defined in ``reference_impl`` made inside
    it (directly, through an alias or ``super()``) raises ``CheckFailed``.

    ``allowed`` names what may be called, as qualified names
    (``"reference_impl.tokenizer.merge"``; a module or class name allows all that is in it)
    or as the objects themselves (``allowed=(merge,)``). Whatever an allowed function
    calls is allowed too. Torch and the learner's own code are never concerned.

    The watch is a profile function (``sys.setprofile`` and ``threading.setprofile`` for
    threads started inside the block); the previous ones are restored on exit, also when
    the block raises. A violation that the learner's code catches and hides still fails
    the check when the block ends.
    """

    def __init__(self, allowed=()):
        if isinstance(allowed, str) or not isinstance(allowed, (list, tuple, set, frozenset)):
            allowed = (allowed,)
        self.allowed = tuple(_qualified_name(item) for item in allowed)
        self.violation: str | None = None

    def __enter__(self) -> forbid_reference_impl:
        self._previous = sys.getprofile()
        self._previous_threading = threading.getprofile()
        threading.setprofile(self._watch)
        sys.setprofile(self._watch)
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        still_watching = sys.getprofile() == self._watch
        sys.setprofile(self._previous)
        threading.setprofile(self._previous_threading)
        if self.violation is None and not still_watching:
            self.violation = "your code turned off the checks' watch on reference_impl (sys.setprofile)"
        if self.violation is not None and not isinstance(exc, CheckFailed):
            raise CheckFailed(self.violation) from exc
        return False

    def _watch(self, frame, event, arg) -> None:
        if event != "call" or self.violation is not None:
            return
        name = _reference_frame_name(frame)
        if name is None or self._is_allowed(name):
            return
        caller = frame.f_back
        while caller is not None:  # inside an allowed reference function, anything goes
            caller_name = _reference_frame_name(caller)
            if caller_name is not None and self._is_allowed(caller_name):
                return
            caller = caller.f_back
        self.violation = f"your code calls {name} instead of implementing it"
        raise CheckFailed(self.violation)  # CPython unsets the profile function after this

    def _is_allowed(self, name: str) -> bool:
        return any(name == allowed or name.startswith(allowed + ".") for allowed in self.allowed)


def _reference_frame_name(frame) -> str | None:
    """``"reference_impl.module.Qual.name"`` for a frame running reference code, else None."""
    code = frame.f_code
    filename = code.co_filename
    if not filename.startswith(PACKAGE_DIRS) or code.co_name == "<module>":
        return None  # not reference code, or an import
    module = frame.f_globals.get("__name__", "")
    if not _is_reference_module(module):
        return None
    return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


def _is_reference_module(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _qualified_name(item) -> str:
    if isinstance(item, str):
        return item
    if inspect.ismodule(item):
        return item.__name__
    if hasattr(item, "__module__") and hasattr(item, "__qualname__"):
        return f"{item.__module__}.{item.__qualname__}"
    raise TypeError(f"allowed takes qualified names or functions/classes/modules, got {_type_name(type(item))}")


def expect_own_implementation(obj, what: str = "your implementation") -> None:
    """Fail when ``obj`` is, subclasses or wraps (holds, as an attribute, submodule,
    ``functools.partial``, bound method or closure) something from ``reference_impl``."""
    __tracebackhide__ = True
    found = _find_reference(obj, path="", depth=0, seen=set())
    if found is not None:
        relation, name = found
        raise CheckFailed(f"{what} {relation} {name}: write your own implementation instead of using the reference one")


def _find_reference(obj, path: str, depth: int, seen: set) -> tuple[str, str] | None:
    if id(obj) in seen or depth > 4:
        return None
    seen.add(id(obj))

    name = _reference_definition(obj)
    if name is not None:
        return ("is" if not path else f"wraps (in {path})", name)
    if inspect.isclass(obj):
        for base in obj.__mro__[1:]:
            base_name = _reference_definition(base)
            if base_name is not None:
                return ("subclasses" if not path else f"wraps a subclass (in {path}) of", base_name)
        return None
    if not (inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.ismodule(obj)):
        for cls in type(obj).__mro__:
            cls_name = _reference_definition(cls)
            if cls_name is not None:
                return ("is an instance of" if not path else f"wraps (in {path}) an instance of", cls_name)

    for child_path, child in _parts(obj):
        found = _find_reference(child, path + child_path, depth + 1, seen)
        if found is not None:
            return found
    return None


def _reference_definition(obj) -> str | None:
    """The qualified name of a function or class defined in reference_impl (not in checks)."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj)):
        return None
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and _is_reference_module(module):
        return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return None


def _parts(obj):
    """What an object may wrap, with the path that leads to it."""
    if inspect.ismodule(obj):
        return
    if isinstance(obj, torch.nn.Module):
        yield from ((f".{name}", module) for name, module in obj.named_children())
    if inspect.ismethod(obj):
        yield ".__func__", obj.__func__
        yield ".__self__", obj.__self__
    wrapped = getattr(obj, "__wrapped__", None) if callable(obj) else None  # functools.wraps
    if wrapped is not None:
        yield ".__wrapped__", wrapped
    if hasattr(obj, "func") and type(obj).__name__ == "partial":
        yield ".func", obj.func
        yield from ((f".args[{i}]", arg) for i, arg in enumerate(obj.args))
        yield from ((f".keywords[{k!r}]", v) for k, v in obj.keywords.items())
    if inspect.isfunction(obj):
        for cell, name in zip(obj.__closure__ or (), obj.__code__.co_freevars):
            try:
                yield f"closure variable {name}", cell.cell_contents
            except ValueError:  # an empty cell
                pass
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        yield from ((f"[{i}]", item) for i, item in enumerate(obj))
    elif isinstance(obj, dict):
        yield from ((f"[{key!r}]", value) for key, value in obj.items())
    elif not inspect.isclass(obj) and hasattr(obj, "__dict__") and not isinstance(obj, torch.Tensor):
        yield from ((f".{key}", value) for key, value in vars(obj).items() if not key.startswith("__"))


# ---------------------------------------------------------------------------------------
# Setting up an exercise notebook
# ---------------------------------------------------------------------------------------


def show_warnings_on_stdout() -> None:
    """Print warnings on stdout instead of stderr.

    Plain nbgrader gives no points to a test cell that writes anything to stderr, so a
    harmless warning (a deprecation inside a library, say) would cost a correct solution its
    points. The course's grader keeps stderr out of the grades (``nbgrader_config.py``);
    this keeps warnings out of stderr also where a notebook is graded without it. Call it
    once in an exercise notebook's setup cell.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message}: {hint}" if hint else message


def _unravel(flat_index: int, shape) -> tuple[int, ...]:
    index = []
    for size in reversed(tuple(shape)):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def _format_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]" if index else "the only position"


def _snippet(text: str, start: int, width: int = 20) -> str:
    if start >= len(text):
        return "the end of the text"
    piece = text[start : start + width]
    return repr(piece) + ("..." if start + width < len(text) else "")


def _short_repr(value, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _type_name(cls: type) -> str:
    """``list``, ``torch.Tensor``, ``torch.nn.Module``: the name a learner would write."""
    module, name = cls.__module__, cls.__qualname__
    if module == "builtins":
        return name
    top = module.split(".")[0]
    for public in (top, f"{top}.nn", f"{top}.utils.data"):
        try:
            if getattr(importlib.import_module(public), name, None) is cls:
                return f"{public}.{name}"
        except ImportError:
            pass
    return f"{module}.{name}"


def _a_type(expected_type) -> str:
    """``a list``, ``an int``, ``a list or a tuple``."""
    types = expected_type if isinstance(expected_type, tuple) else (expected_type,)
    names = [_type_name(t) for t in types]
    return " or ".join(("an " if name[0] in "aeiou" else "a ") + name for name in names)
