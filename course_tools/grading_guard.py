"""The guard of the checks while a notebook is graded: this module runs inside the kernel.

A checks cell calls ``expect_close``, ``forbid_reference_impl``, ... and the setup cell's
helpers as globals of the notebook, and relies on ``torch``, the built-ins and
``reference_impl``. A solution cell can rebind any of them (``expect_close = lambda *a,
**k: None``) or patch a module (``torch.allclose = ...``,
``reference_impl.tokenizer.build_vocab = build_vocab``) and so switch the checks off.

The grader (``course_tools.nbgrader_plugins.GuardedExecute``) runs, in the kernel, out of
the notebook's cells:

* ``install()`` before the first cell: a snapshot of what the checks rely on;
* ``record(globals(), names)`` after each read-only cell (the setup): the modules,
  functions and classes it bound;
* ``report(globals(), names)`` before and after each checks cell, with the names the
  cell uses: it puts back whatever was rebound or patched (so the checks run as written)
  and writes what it found; the grader gives that exercise 0 and says why.

Whatever a notebook defines itself (a function or class whose ``__module__`` is
``__main__``) found attached to a module of ``reference_impl`` or ``course_tools`` counts
as tampering too, whichever attribute it was put in.

This is a guard against rebinding and monkey-patching, the ways a learner can switch the
checks off with ordinary Python. The notebook runs in the same process as the checks, so
code written to defeat the grader itself (ctypes, the garbage collector, this module) is
beyond it: the graded notebooks keep every cell for a human to read.
"""

from __future__ import annotations

import builtins
import importlib
import json
import sys
import threading
import types

MARK = "course_tools.grading_guard:"  # the line that carries the findings back to the grader
_MISSING = object()
# Names IPython and ipykernel themselves put in the built-ins, or change, around each cell.
_VOLATILE_BUILTINS = {"exit", "quit", "get_ipython", "display", "__IPYTHON__", "_", "__", "___", "input", "raw_input"}
_WATCHED_PREFIXES = ("reference_impl", "course_tools")  # torch and torch.nn.functional: by snapshot

_state: dict | None = None


def install() -> None:
    """Take the snapshot: run before any cell of the notebook."""
    global _state
    import torch
    import torch.nn.functional

    import course_tools.checks as checks

    # label -> (module, its attributes then, strict). Strict: any change counts. Otherwise
    # only a replacement by the notebook's own code counts: torch changes some of its own
    # functions when it imports a part lazily (torch._dynamo wraps torch.manual_seed).
    modules = {
        "builtins": (builtins, {k: v for k, v in vars(builtins).items() if k not in _VOLATILE_BUILTINS}, False),
        "sys": (sys, {k: getattr(sys, k) for k in ("setprofile", "getprofile", "settrace", "gettrace")}, True),
        "threading": (threading, {k: getattr(threading, k) for k in ("setprofile", "getprofile", "settrace")}, True),
        "course_tools.checks": (checks, _callables(vars(checks)), True),
        "torch": (torch, _callables(vars(torch)), False),
        "torch.nn.functional": (torch.nn.functional, _callables(vars(torch.nn.functional)), False),
    }
    classes = {
        "torch.Tensor": (torch.Tensor, dict(vars(torch.Tensor))),
        "torch._C.TensorBase": (torch._C.TensorBase, dict(vars(torch._C.TensorBase))),
        "torch.nn.Module": (torch.nn.Module, dict(vars(torch.nn.Module))),
    }
    api = {name: getattr(checks, name) for name in (*checks.__all__, "CheckFailed")}
    _state = {
        "modules": modules,
        "classes": classes,
        "api": api,
        "setup": {},
        "write": sys.stdout.write,
        "flush": sys.stdout.flush,
    }


def record(namespace: dict, names: list[str]) -> None:
    """Remember what a read-only cell (the setup) bound to ``names``: modules, functions, classes."""
    if _state is None:
        return
    for name in names:
        value = namespace.get(name, _MISSING)
        if value is not _MISSING and _is_code(value):
            _state["setup"][name] = value


def checkpoint(namespace: dict, names: list[str], during: bool = False) -> list[str]:
    """Put back what the checks rely on; return a sentence for each thing that had changed.

    A name of the setup cell that the notebook bound to something else before the checks
    (its own helper of the same name, say) is put back without a finding: the checks then
    run as written. Changed while the checks ran (``during``), it is a finding like the
    others, since the checks have used it."""
    if _state is None:
        return ["the grading guard was not installed"]
    found = []
    api, setup = _state["api"], _state["setup"]
    for name in names:
        current = namespace.get(name, _MISSING)
        original = api.get(name, setup.get(name, _MISSING))
        if original is not _MISSING:
            if current is not original:
                if current is not _MISSING and (name in api or during):
                    found.append(f"rebinds {name}, which the checks use")
                namespace[name] = original
        elif current is not _MISSING and hasattr(builtins, name) and name not in _VOLATILE_BUILTINS:
            if _from_notebook(current):  # a function of its own in place of a built-in the checks call
                found.append(f"rebinds the built-in {name}, which the checks use")
                del namespace[name]

    for label, (module, snapshot, strict) in _state["modules"].items():
        contents = vars(module)
        for name, original in snapshot.items():
            current = contents.get(name, _MISSING)
            if current is not original and (strict or _from_notebook(current)):
                found.append(f"replaces {label}.{name}")
                setattr(module, name, original)
    for label, (cls, snapshot) in _state["classes"].items():
        contents = dict(vars(cls))
        for name, current in contents.items():
            original = snapshot.get(name, _MISSING)
            if current is not original and _from_notebook(current):
                found.append(f"replaces {label}.{name}")
                if original is _MISSING:
                    delattr(cls, name)  # the inherited one is the original
                else:
                    setattr(cls, name, original)

    watched = set(_state["modules"])
    for module_name, module in list(sys.modules.items()):
        if module_name in watched or not module_name.startswith(_WATCHED_PREFIXES) or module is None:
            continue
        if module_name == __name__:
            continue
        patched = [name for name, value in list(vars(module).items()) if _from_notebook(value)]
        if patched:
            found.extend(f"replaces {module_name}.{name} with its own code" for name in patched)
            try:
                importlib.reload(module)  # every attribute back as the package defines it
            except Exception:
                for name in patched:
                    delattr(module, name)
    return found


def report(namespace: dict, names: list[str], during: bool = False) -> None:
    """``checkpoint``, its findings written on the cell's output for the grader to read."""
    try:
        found = checkpoint(namespace, names, during)
    except Exception as error:  # the guard itself was broken: that is tampering too
        found = [f"broke the grader's guard ({type(error).__name__}: {error})"]
    write = _state["write"] if _state else sys.stdout.write
    write(MARK + json.dumps(found) + "\n")
    if _state:
        _state["flush"]()


def _callables(contents: dict) -> dict:
    return {name: value for name, value in contents.items() if callable(value) and not isinstance(value, type(sys))}


def _is_code(value) -> bool:
    """A module, class or function (not an object that happens to be callable, like a model)."""
    return isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType))


def _from_notebook(value) -> bool:
    """A function or class that the notebook defined (also in a partial, a method or a
    ``functools.wraps`` wrapper that claims another module)."""
    try:
        for _ in range(3):
            if getattr(value, "func", None) is not None and type(value).__name__ == "partial":
                value = value.func
            elif getattr(value, "__func__", None) is not None:
                value = value.__func__
            else:
                break
        if not callable(value):
            return False
        code = getattr(value, "__code__", None)
        if code is not None and _is_cell_file(getattr(code, "co_filename", "")):
            return True
        return getattr(value, "__module__", None) == "__main__"
    except Exception:  # an object that fails when looked at was not made by a library
        return True


def _is_cell_file(filename: str) -> bool:
    """The file name IPython gives the code of a cell."""
    return "ipykernel_" in filename or filename.startswith("<ipython-input")
