"""Grading that a class can trust, on the real nbgrader pipeline (issue 12).

Hidden checks never reach a feedback page; a notebook that switches the checks off gets 0
for those exercises, with a status that says so; a correct notebook that writes to stderr
gets full marks; two gradings of one course at once leave the gradebook as one would; a
copy-pasted cell costs nothing else; a regrade's feedback shows the new score; the grade
export carries each student's status.

One course folder with one assignment (ch03: every exercise has hidden checks), one batch
of submissions graded once; the feedback, the regrade and the concurrent runs reuse it.
"""

from __future__ import annotations

import copy
import csv
import fcntl
import functools
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from conftest import requires_sandbox
from test_grading import (
    ROOT,
    batch_rows,
    cell_by_id,
    exercises_of,
    gradebook_scores,
    make_course,
    nbgrader_meta,
    small_release_notebook,
    solve_exercises,
    submit,
)

from course_tools import grading_guard
from course_tools.grading import (
    Course,
    Outcome,
    autograde,
    explain_lost_points,
    export,
    feedback,
    main,
    remove_duplicated_cells,
)
from course_tools.nbgrader_plugins import OneLineErrors, bound_names, used_names

ASSIGNMENT = "ch03"
NOTEBOOK = f"{ASSIGNMENT}_exercises"

pytestmark = [
    pytest.mark.slow,
    requires_sandbox,
    pytest.mark.skipif(not (ROOT / "solutions" / ASSIGNMENT).is_dir(), reason=f"no solutions/{ASSIGNMENT}"),
]


# ---------------------------------------------------------------------------------------
# The course and the batch
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    return make_course(tmp_path_factory.mktemp("trust"), [ASSIGNMENT])


@pytest.fixture(scope="module")
def notebooks(course):
    release = nbformat.read(course.release / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    source = nbformat.read(course.source / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    exercises = exercises_of(source)
    everything = solve_exercises(release, source, range(len(exercises)))
    return release, source, exercises, everything


def solution(notebook, exercise):
    [grade_id] = exercise.solution_ids
    return cell_by_id(notebook, grade_id)


@pytest.fixture(scope="module")
def batch(course, notebooks):
    release, source, exercises, everything = notebooks

    def changed(change):
        notebook = copy.deepcopy(everything)
        change(notebook)
        return notebook

    def rebind(nb):
        # The example: switch two checks off, answer nothing.
        solution(nb, exercises[0]).source = (
            "expect_close = lambda *a, **k: None\nexpect_shape = lambda *a, **k: None\n\n\n"
            "def attention_scores(inputs, query):\n    return None"
        )
        # A correct answer, and torch's comparison patched for good measure.
        solution(
            nb, exercises[2]
        ).source += "\n\ntorch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)"
        # A correct answer, and the reference patched with the learner's own function.
        solution(nb, exercises[3]).source += (
            "\n\nimport reference_impl.attention\n\n\ndef my_mask(n):\n    return torch.ones(n, n).triu(1).bool()\n\n\n"
            "reference_impl.attention.causal_mask = my_mask"
        )
        # Wrong answers that switch the checks off only while the checks call them.
        solution(nb, exercises[4]).source = (
            "def split_heads(x, num_heads):\n"
            "    globals()['expect_shape'] = globals()['expect_equal'] = lambda *a, **k: None\n"
            "    return x\n\n\ndef merge_heads(x):\n    return x"
        )

    def write_to_stderr(nb):
        solution(nb, exercises[0]).source = (
            "import logging\nimport sys\nimport warnings\n\nfrom tqdm import tqdm\n\n\n"
            "def attention_scores(inputs, query):\n"
            "    for _ in tqdm(range(3), desc='scores'):\n        pass\n"
            "    logging.warning('computing %d scores', len(inputs))\n"
            "    print('debug: on stderr', file=sys.stderr)\n"
            "    warnings.warn('a warning of my own')\n"
            "    return inputs @ query"
        )

    def duplicate(nb):
        # JupyterLab's copy and paste: same nbgrader metadata, a new cell id. The copy of
        # exercise 2's solution is a stub: grading it would fail exercise 2.
        first = solution(nb, exercises[1])
        stub = copy.deepcopy(cell_by_id(release, exercises[1].solution_ids[0]))
        stub["id"] = "pasted-solution"
        nb.cells.insert(nb.cells.index(first) + 1, stub)
        checks = copy.deepcopy(cell_by_id(nb, exercises[3].test_id))
        checks["id"] = "pasted-checks"
        nb.cells.append(checks)

    def fail_a_hidden_check(nb):  # the visible check passes with a constant; the hidden ones do not
        solution(nb, exercises[0]).source = (
            "def attention_scores(inputs, query):\n"
            "    return torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])"
        )

    submissions = {
        "good": everything,
        "rebinds": changed(rebind),
        "stderr": changed(write_to_stderr),
        "duplicated": changed(duplicate),
        "hidden_fail": changed(fail_a_hidden_check),
        "dave": release,  # hands in the blank notebook first; a regrade follows
    }
    for student, notebook in submissions.items():
        submit(course, student, ASSIGNMENT, {f"{NOTEBOOK}.ipynb": notebook})
    submit(course, "misnamed", ASSIGNMENT, {"wrong_name.ipynb": everything})  # cannot be graded
    submissions["misnamed"] = None
    autograde(course, ASSIGNMENT, timeout=60, students=list(submissions), echo=False)
    return {
        "report": batch_rows(course, ASSIGNMENT, submissions),
        "gradebook": gradebook_scores(course, ASSIGNMENT),
        "exercises": exercises,
    }


def total(exercises) -> float:
    return sum(exercise.points for exercise in exercises)


# ---------------------------------------------------------------------------------------
# Grades
# ---------------------------------------------------------------------------------------


def test_correct_notebook_gets_full_marks_with_the_guard(batch):
    row = batch["report"]["good"]
    assert (row["status"], float(row["score"]), row["explanation"]) == (
        "ok",
        total(batch["exercises"]),
        "every exercise passes",
    )


def test_rebinding_or_patching_the_checks_gives_those_exercises_zero(batch):
    exercises = batch["exercises"]
    tampered = {0, 2, 3, 4}
    grades = batch["gradebook"]["rebinds"]
    for k, exercise in enumerate(exercises):
        assert grades[exercise.test_id] == (0.0 if k in tampered else exercise.points), exercise.test_id
    row = batch["report"]["rebinds"]
    assert row["status"] == "checks tampered with"
    assert float(row["score"]) == total(exercises) - sum(exercises[k].points for k in tampered)
    explanation = row["explanation"]
    assert f"{exercises[0].test_id}: the checks were tampered with: your code rebinds expect_close" in explanation
    assert "rebinds expect_shape, which the checks use" in explanation
    assert f"{exercises[2].test_id}: the checks were tampered with: your code replaces torch.isclose" in explanation
    assert "replaces reference_impl.attention.causal_mask with its own code" in explanation
    assert f"{exercises[4].test_id}: the checks were tampered with: your code rebinds expect_equal" in explanation


def test_stderr_of_a_correct_solution_costs_nothing(batch):
    row = batch["report"]["stderr"]
    assert (row["status"], float(row["score"]), row["explanation"]) == (
        "ok",
        total(batch["exercises"]),
        "every exercise passes",
    )
    assert batch["gradebook"]["stderr"]["total"] == total(batch["exercises"])


def test_duplicated_cells_grade_the_first_copy_and_keep_every_points(batch):
    exercises = batch["exercises"]
    row = batch["report"]["duplicated"]
    assert row["status"] == "duplicated cell"
    assert float(row["score"]) == total(exercises)
    assert row["explanation"] == (
        f"the cell {exercises[1].solution_ids[0]} appears 2 times (a copy keeps nbgrader's id): "
        "the first one was graded, the other left out; "
        f"the cell {exercises[3].test_id} appears 2 times (a copy keeps nbgrader's id): "
        "the first one was graded, the other left out"
    )


def test_a_failing_hidden_check_names_the_check_in_the_report(batch):
    exercises = batch["exercises"]
    row = batch["report"]["hidden_fail"]
    assert float(row["score"]) == total(exercises) - exercises[0].points
    assert row["explanation"] == (
        f"failing: {exercises[0].test_id} (CheckFailed: attention_scores of 7 random 5-dimensional tokens "
        "shape (6,), expected (7,))"
    )


# ---------------------------------------------------------------------------------------
# Feedback
# ---------------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    """What a reader sees of an HTML page (the code as typed, without the highlighting's tags)."""
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return "".join(parser.parts)


def hidden_lines(source_nb) -> list[str]:
    """Every line of a hidden block that appears nowhere else in the notebook (12 characters or more)."""
    inside, outside = set(), set()
    for cell in source_nb.cells:
        hidden = False
        for line in cell.source.splitlines():
            stripped = line.strip()
            if "BEGIN HIDDEN TESTS" in stripped:
                hidden = True
            elif "END HIDDEN TESTS" in stripped:
                hidden = False
            elif len(stripped) >= 12:  # a line of code, not a lone bracket
                (inside if hidden else outside).add(stripped)
    return sorted(inside - outside)


@pytest.fixture(scope="module")
def pages(course, batch):
    written = feedback(course, ASSIGNMENT, echo=False)
    return {path.parent.parent.name: path for path in written}


def test_feedback_has_no_line_of_any_hidden_block(pages, notebooks):
    _, source, _, _ = notebooks
    lines = hidden_lines(source)
    assert len(lines) > 20  # the test looks at something
    for student, page in pages.items():
        text = page_text(page)
        assert "generator = torch.Generator().manual_seed(123)" not in text
        leaked = [line for line in lines if line in text]
        assert leaked == [], f"{student}'s page shows hidden checks: {leaked[:3]}"
        assert "HIDDEN TESTS" not in text


def test_feedback_keeps_the_score_and_the_one_line_message_of_a_hidden_check(pages, batch):
    exercises = batch["exercises"]
    text = page_text(pages["hidden_fail"])
    assert f"Score: {total(exercises) - exercises[0].points} / {total(exercises)}" in text
    assert "CheckFailed: attention_scores of 7 random 5-dimensional tokens shape (6,), expected (7,)" in text
    # One line, not a traceback through course_tools.checks.
    assert "Traceback" not in text and "checks.py" not in text and "expect_shape(actual" not in text


def test_feedback_says_why_an_exercise_got_zero(pages, batch):
    exercises = batch["exercises"]
    text = page_text(pages["rebinds"])
    row = batch["report"]["rebinds"]
    # It loses exactly the exercises whose checks it switched off, worth 7 points.
    assert (float(row["score"]), float(row["max_score"])) == (total(exercises) - 7, total(exercises))
    outcome = f"Grading outcome: {row['score']} of {row['max_score']} points; status checks tampered with"
    assert outcome in " ".join(text.split())
    assert "ChecksTampered: the checks were tampered with: your code rebinds expect_close" in text
    assert f"Score: 0.0 / {exercises[0].points}" in text


def test_regrade_then_feedback_shows_the_new_score(course, pages, notebooks, batch):
    exercises = batch["exercises"]
    assert f"Score: 0.0 / {total(exercises)}" in page_text(pages["dave"])
    _, _, _, everything = notebooks
    submit(course, "dave", ASSIGNMENT, {f"{NOTEBOOK}.ipynb": everything})
    [outcome] = autograde(course, ASSIGNMENT, timeout=60, students=["dave"], echo=False)
    assert outcome.score == total(exercises)
    assert main(["--course-dir", str(course.root), "feedback", ASSIGNMENT, "--student", "dave"]) == 0
    text = page_text(pages["dave"])
    assert f"Score: {total(exercises)} / {total(exercises)}" in text
    assert "every exercise passes" in text


def test_feedback_of_an_ungraded_notebook_says_why(pages, batch):
    text = " ".join(page_text(pages["misnamed"]).split())
    assert f"Score: 0 / {total(batch['exercises']):g}" in text
    assert (
        f"could not be graded (status missing notebook): {NOTEBOOK}.ipynb is not in the submission "
        "(it holds: wrong_name.ipynb); not graded: 0 for every exercise." in text
    )
    assert "reports/logs" not in text


def test_export_carries_each_students_status(course, batch, tmp_path):
    path = export(course, to=tmp_path / "grades.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == ASSIGNMENT}
    assert rows["rebinds"]["status"] == "checks tampered with"
    assert float(rows["rebinds"]["score"]) == float(batch["report"]["rebinds"]["score"])
    assert rows["good"]["status"] == "ok"
    assert rows["duplicated"]["explanation"].startswith("the cell ")


# ---------------------------------------------------------------------------------------
# Two gradings at once
# ---------------------------------------------------------------------------------------


def test_two_concurrent_gradings_leave_the_gradebook_as_one(course, batch):
    before = gradebook_scores(course, ASSIGNMENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "course_tools.grading", "--course-dir", str(course.root)]
    command += ["autograde", ASSIGNMENT, "--student", "good"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    runs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("waiting for another grading command on this course to finish (pid " in out for out in outputs) == 1
    assert gradebook_scores(course, ASSIGNMENT) == before
    row = batch_rows(course, ASSIGNMENT, ["good"])["good"]
    assert (row["status"], float(row["score"])) == ("ok", float(total(batch["exercises"])))


def test_a_second_command_with_no_wait_refuses_while_the_course_is_busy(course, batch, capsys):
    with open(course.root / ".grading.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 12345, since 2026-03-01 17:00:00: grading autograde ch03\n")
        held.flush()
        status = main(["--course-dir", str(course.root), "--no-wait", "autograde", ASSIGNMENT])
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    assert status == 1
    assert (
        f"error: another grading command is running on {course.root} "
        "(pid 12345, since 2026-03-01 17:00:00: grading autograde ch03); "
        "run this one when it has finished, or without --no-wait to wait for it"
    ) in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Pieces that need no kernel
# ---------------------------------------------------------------------------------------


def test_remove_duplicated_cells_keeps_the_first_copy():
    notebook = small_release_notebook()
    pasted = copy.deepcopy(notebook.cells[2])  # ex1_solution, pasted below itself with new code
    pasted["id"] = "pasted"
    pasted.source = "def f():\n    return 2"
    notebook.cells.insert(3, pasted)
    notebook.cells.append(copy.deepcopy(notebook.cells[4]) | {"id": "pasted-tests"})  # ex1_tests again
    assert remove_duplicated_cells(notebook) == {"ex1_solution": 2, "ex1_tests": 2}
    ids = [nbgrader_meta(cell).get("grade_id", cell.get("id")) for cell in notebook.cells]
    assert ids == ["intro", "setup", "ex1_solution", "ex1_tests", "ex2_solution", "ex2_tests"]
    assert notebook.cells[2].source == "def f():\n    raise NotImplementedError()"
    assert remove_duplicated_cells(notebook) == {}


def test_names_used_by_a_checks_cell_and_bound_by_the_setup():
    assert used_names("with forbid_reference_impl():\n    y = f(x)\nexpect_close(y, torch.ones(2), 'y')") == [
        "expect_close",
        "f",
        "forbid_reference_impl",
        "torch",
        "x",
    ]  # not y: the cell assigns it
    setup = "import torch\nimport torch.nn.functional as F\nfrom course_tools.checks import expect_close\n\n\ndef book_inputs():\n    return 1\n\n\ninputs = book_inputs()"
    assert bound_names(setup) == ["F", "book_inputs", "expect_close", "inputs", "torch"]


def test_guard_puts_back_and_reports_rebound_names_and_patched_modules():
    import types

    import torch

    import course_tools.checks as checks

    grading_guard.install()
    namespace = {"expect_close": checks.expect_close, "helper": len}
    grading_guard.record(namespace, ["helper"])
    assert grading_guard.checkpoint(namespace, ["expect_close", "helper", "torch"]) == []
    # A helper of the setup that the notebook redefined before the checks: put back, no finding.
    namespace["helper"] = print
    assert grading_guard.checkpoint(namespace, ["helper"]) == []
    assert namespace["helper"] is len

    original_isclose, original_seed = torch.isclose, torch.manual_seed
    notebook = {"__name__": "__main__"}  # the notebook's code: its module is __main__
    exec("def mask(n):\n    return None\n\n\nclose = lambda *a, **k: None", notebook)
    namespace["expect_close"] = lambda *a, **k: None
    namespace["helper"] = print
    namespace["len"] = notebook["mask"]  # shadows a built-in with the notebook's own function
    torch.isclose = notebook["close"]
    torch.manual_seed = functools.wraps(original_seed)(lambda seed: original_seed(seed))  # as torch._dynamo does
    reference = types.ModuleType("reference_impl.stand_in")  # a module of the package, patched
    reference.causal_mask = notebook["mask"]
    sys.modules[reference.__name__] = reference
    try:
        found = grading_guard.checkpoint(namespace, ["expect_close", "helper", "len", "torch"], during=True)
        assert torch.manual_seed is not original_seed  # a library's own wrapper is left alone
    finally:
        torch.isclose, torch.manual_seed = original_isclose, original_seed
        del sys.modules[reference.__name__]
    assert found == [
        "rebinds expect_close, which the checks use",
        "rebinds helper, which the checks use",
        "rebinds the built-in len, which the checks use",
        "replaces torch.isclose",
        "replaces reference_impl.stand_in.causal_mask with its own code",
    ]
    assert not hasattr(reference, "causal_mask")  # no original to put back: taken out
    assert namespace["expect_close"] is checks.expect_close and namespace["helper"] is len and "len" not in namespace
    assert grading_guard.checkpoint(namespace, ["expect_close", "helper", "len"]) == []


def test_one_line_errors_in_checks_cells():
    notebook = small_release_notebook()
    checks = notebook.cells[3]
    checks.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="CheckFailed",
            evalue="f() is 2, expected 1",
            traceback=[
                "Traceback (most recent call last)",
                'File "course_tools/checks.py", line 9',
                "CheckFailed: ...",
            ],
        )
    ]
    OneLineErrors().preprocess(notebook, {})
    assert checks.outputs[0].traceback == ["CheckFailed: f() is 2, expected 1"]


def test_a_zero_without_an_error_is_explained():
    notebook = small_release_notebook()
    notebook.cells[3].outputs = [nbformat.v4.new_output("stream", name="stderr", text="progress\n")]
    notebook.cells[5].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"})]
    outcome = Outcome("alice")
    explain_lost_points(notebook, {"ex1_tests": 0.0, "ex2_tests": 1.0}, outcome)
    assert outcome.details == [
        "ex1_tests scored 0 of 1 although no check failed: it wrote to stderr, which nbgrader scores 0 "
        "(grade with the course's nbgrader_config.py)",
        "ex2_tests scored 1 of 2 although no check failed: its last line shows a value, which nbgrader reads "
        "as partial credit",
    ]


def test_guide_documents_the_commands_and_statuses():
    from course_tools.grading import STATUSES

    guide = (ROOT / "book" / "instructor_guide.md").read_text(encoding="utf-8")
    for command in ("grading feedback ch02", "grading export", "--no-wait", "penalty_method"):
        assert command in guide, command
    for status in STATUSES:
        assert re.search(rf"\| `{re.escape(status)}` \|", guide), status
