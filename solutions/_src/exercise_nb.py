"""Write an nbgrader source notebook, ``solutions/chNN/chNN_exercises.ipynb``, from a short description.

Used by ``make_ch03.py`` and ``make_ch04.py`` beside this file. The notebooks follow the
layout of ``solutions/ch02/ch02_exercises.ipynb`` (the course's convention):

* an intro cell (with the table of points, made from the exercises) and a locked setup cell;
* per exercise three cells: the task (markdown), the solution (``### BEGIN SOLUTION`` /
  ``### END SOLUTION``; nbgrader replaces each region with ``raise NotImplementedError()``),
  and ONE locked, graded checks cell: the visible checks, then
  ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``;
* an outro cell.

Cell ids and metadata are fixed and the notebook is stored without outputs, so running a
script again gives the same file byte for byte. Then regenerate the student version:
``.venv/bin/python -m reference_impl.grading generate chNN``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]  # the repository root

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}

HOW_THEY_WORK = """
How they work:

* Each exercise has a cell with `# YOUR CODE HERE` and `raise NotImplementedError()`:
  replace those two lines with your code (keep the function or class name and its arguments).
* Run the cell below it: its checks compare your code with the course's reference
  implementation on small inputs and say what is wrong when a check fails. When grading,
  the same cell runs again with more (hidden) checks. You get an exercise's points when
  all its checks pass.
* Write the code yourself. The checks notice when your code calls the reference
  implementation (`reference_impl`) instead, except where an exercise says you may.
* Each exercise is graded on its own: a helper from another exercise may be copied, but if
  you call it and it is unfinished, this exercise fails too.
* Do not edit or delete the checks cells: grading restores them anyway. Write warnings or
  messages with `print`, not to `stderr`.
* Run the setup cell first; before you submit, run *Kernel > Restart & Run All*.
"""

OUTRO = """
## Before you submit

Run *Kernel > Restart & Run All* and check that every cell runs. An exercise you could not
finish may keep its `raise NotImplementedError()`: it gets no points, and the others are
graded as usual.
"""


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


@dataclass
class Exercise:
    """One exercise: its task (markdown), solution code and checks (visible, then hidden)."""

    slug: str  # names the cells: ex3_self_attention_solution / ex3_self_attention_tests
    title: str
    points: int
    task: str
    solution: str
    checks: str
    hidden_checks: str

    def __post_init__(self):
        for field in ("task", "solution", "checks", "hidden_checks"):
            setattr(self, field, _clean(getattr(self, field)))
        # Every exercise must give the learner something to write, and grading something more to check.
        if "### BEGIN SOLUTION" not in self.solution or "### END SOLUTION" not in self.solution:
            raise ValueError(f"exercise {self.slug!r}: the solution has no ### BEGIN/END SOLUTION region")
        if "forbid_reference_impl(" not in self.checks:
            raise ValueError(f"exercise {self.slug!r}: the checks must run the learner's code under forbid_reference_impl()")
        if not self.hidden_checks:
            raise ValueError(f"exercise {self.slug!r}: no hidden checks")


def _markdown(cell_id: str, text: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(_clean(text))
    cell.id = cell_id
    return cell


def _code(cell_id: str, text: str, nbgrader: dict, locked: bool) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(_clean(text))
    cell.id = cell_id
    metadata = {"nbgrader": {"schema_version": 3, "task": False, **nbgrader}}
    if locked:
        metadata = {"deletable": False, "editable": False, **metadata}
    cell.metadata = metadata
    return cell


def _exercise_cells(number: int, exercise: Exercise) -> list[nbformat.NotebookNode]:
    points = f"{exercise.points} point{'s' if exercise.points != 1 else ''}"
    grade_id = f"ex{number}_{exercise.slug}"
    checks = "\n".join(
        [
            f"# Exercise {number}: checks ({points}). Run this cell to test your code.",
            "# Do not edit it: grading restores the original and adds hidden checks.",
            exercise.checks,
            f'print("Exercise {number}: the visible checks pass (grading runs more).")',
            "### BEGIN HIDDEN TESTS",
            exercise.hidden_checks,
            "### END HIDDEN TESTS",
        ]
    )
    return [
        _markdown(f"ex{number}-task", f"## Exercise {number} ({points}): {exercise.title}\n\n{exercise.task}"),
        _code(
            f"ex{number}-solution",
            exercise.solution,
            {"grade": False, "grade_id": f"{grade_id}_solution", "locked": False, "solution": True},
            locked=False,
        ),
        _code(
            f"ex{number}-tests",
            checks,
            {"grade": True, "grade_id": f"{grade_id}_tests", "locked": True, "points": exercise.points, "solution": False},
            locked=True,
        ),
    ]


def _points_table(exercises: list[Exercise]) -> str:
    rows = ["| exercise | points |", "|---|---|"]
    for number, exercise in enumerate(exercises, start=1):
        title = exercise.title[0].upper() + exercise.title[1:]
        rows.append(f"| {number}. {title.replace('|', chr(92) + '|')} | {exercise.points} |")
    return "\n".join(rows)


def build(title: str, about: str, setup: str, exercises: list[Exercise]) -> nbformat.NotebookNode:
    """The notebook: intro, setup, three cells per exercise, outro."""
    intro = f"# {title}\n\n{_clean(about)}\n{HOW_THEY_WORK}\n{_points_table(exercises)}"
    cells = [
        _markdown("intro", intro),
        _code("setup", setup, {"grade": False, "grade_id": "setup", "locked": True, "solution": False}, locked=True),
    ]
    for number, exercise in enumerate(exercises, start=1):
        cells += _exercise_cells(number, exercise)
    cells.append(_markdown("outro", OUTRO))

    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nb


def write(nb: nbformat.NotebookNode, path: str) -> Path:
    target = ROOT / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")
    return target
