"""The nbgrader pipeline: generated exercises, and a batch autograde that survives bad submissions.

Every assignment under solutions/ is covered: the tests are parametrised over the chNN
folders found there, so a new chapter's exercise set is tested without a new test.

Each autograde of a notebook starts a kernel (seconds), so the submissions are graded in
few batches: one per assignment (the solutions, the blank release notebook, some exercises
solved), and one batch of bad submissions.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import requires_sandbox

from course_tools.grading import (
    REPORT_COLUMNS,
    STATUSES,
    Course,
    Outcome,
    autograde,
    find_assignments,
    generate,
    main,
    read_report,
    record_zero,
    restore_deleted_cells,
    sha256_tree,
)

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = find_assignments(ROOT / "solutions")
BAD_BATCH_ASSIGNMENT = "ch02"  # its exercises are the ones the bad submissions break

pytestmark = [
    pytest.mark.slow,  # runs nbgrader on whole classes of notebooks: make test runs it, make test-fast does not
    requires_sandbox,
    pytest.mark.skipif(not ASSIGNMENTS, reason="no assignments under solutions/"),
]


# ---------------------------------------------------------------------------------------
# Helpers: exercises of a notebook, and submissions made from the release notebook
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    solution_ids: tuple[str, ...]  # grade_ids of its solution cells
    test_id: str  # grade_id of its checks cell
    points: float


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercises_of(notebook) -> list[Exercise]:
    """The exercises of a source notebook, in order: the solution cells since the previous
    checks cell belong to the next checks cell."""
    found, solutions = [], []
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            solutions.append(meta["grade_id"])
        if meta.get("grade"):
            found.append(Exercise(tuple(solutions), meta["grade_id"], float(meta["points"])))
            solutions = []
    return found


def cell_by_id(notebook, grade_id: str):
    return next(cell for cell in notebook.cells if nbgrader_meta(cell).get("grade_id") == grade_id)


def without_markers(source: str) -> str:
    """A solution as a student would type it: the source's code without nbgrader's markers."""
    return "\n".join(
        line for line in source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    )


def solve_exercises(release_nb, source_nb, ks) -> nbformat.NotebookNode:
    """The release notebook with the solutions of exercises ``ks`` (0-based) pasted in."""
    submission = copy.deepcopy(release_nb)
    for k in ks:
        for grade_id in exercises_of(source_nb)[k].solution_ids:
            cell_by_id(submission, grade_id).source = without_markers(cell_by_id(source_nb, grade_id).source)
    return submission


def solve_exercise(release_nb, source_nb, k: int) -> nbformat.NotebookNode:
    return solve_exercises(release_nb, source_nb, [k])


def notebook_paths(course_root: Path, folder: str, assignment: str) -> list[Path]:
    return sorted((course_root / folder / assignment).glob("*.ipynb"))


def submit(course: Course, student: str, assignment: str, notebooks: dict[str, object]) -> None:
    """Put files in submitted/<student>/<assignment>/: notebooks, or raw text (for broken files)."""
    folder = course.submitted / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in notebooks.items():
        path = folder / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            nbformat.write(content, path)


def batch_rows(course: Course, assignment: str, students) -> dict[str, dict[str, str]]:
    """The rows of a batch's students in the outcome report (other batches add theirs to it)."""
    report = read_report(course.root / "reports" / f"{assignment}_outcomes.csv")
    missing = sorted(set(students) - set(report))
    assert not missing, f"students missing from the report: {missing}"
    return {student: row for student, row in report.items() if student in students}


def gradebook_scores(course: Course, assignment: str) -> dict[str, dict[str, float]]:
    """student -> {grade_id: score, "total": score} as nbgrader's gradebook has them."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            grades = {grade.name: float(grade.score) for nb in submission.notebooks for grade in nb.grades}
            scores[submission.student.id] = {**grades, "total": float(submission.score)}
    return scores


# ---------------------------------------------------------------------------------------
# The course, generated once into a temporary folder
# ---------------------------------------------------------------------------------------


def make_course(root: Path, assignments: list[str] | None = None) -> Course:
    """A course folder at ``root``: the course's nbgrader_config.py and the sources of
    ``assignments`` (default: all), generated."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for assignment in assignments or ASSIGNMENTS:
        shutil.copytree(ROOT / "solutions" / assignment, root / "solutions" / assignment, ignore=ignore)
    course = Course.at(root)
    generate(course, assignments)
    return course


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_folder_is_what_generate_makes_from_solutions(course, assignment):
    # Byte for byte: this also shows that generating is deterministic, since the committed
    # files were made by another run, in another folder, at another time.
    fresh = {path.name: path.read_bytes() for path in (course.release / assignment).rglob("*") if path.is_file()}
    committed_dir = ROOT / "exercises" / assignment
    committed = (
        {path.name: path.read_bytes() for path in committed_dir.rglob("*") if path.is_file()}
        if committed_dir.is_dir()
        else {}
    )
    assert sorted(committed) == sorted(fresh), (
        f"exercises/{assignment} has other files than generate makes: run `make exercises`"
    )
    for name in fresh:
        assert committed[name] == fresh[name], f"exercises/{assignment}/{name} is out of date: run `make exercises`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_notebook_has_no_solutions_or_hidden_checks(course, assignment):
    for path in notebook_paths(course.root, "exercises", assignment):
        text = path.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{path.name} contains {marker!r}"
        notebook = nbformat.read(path, as_version=4)
        exercises = exercises_of(notebook)
        assert len(exercises) >= 6, f"{assignment} has {len(exercises)} exercises; the course asks for at least 6"
        for exercise in exercises:
            for grade_id in exercise.solution_ids:
                assert "raise NotImplementedError()" in cell_by_id(notebook, grade_id).source


# ---------------------------------------------------------------------------------------
# One batch per assignment: full marks, zero, and exactly the points of what is solved
# ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    course: Course
    assignment: str
    exercises: list[Exercise]
    expected: dict[str, float]  # student -> the score they must get
    report: dict[str, dict[str, str]]
    gradebook: dict[str, dict[str, float]]


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def batch(request, course) -> Batch:
    assignment = request.param
    release = {
        path.name: nbformat.read(path, as_version=4) for path in notebook_paths(course.root, "exercises", assignment)
    }
    source = {
        path.name: nbformat.read(path, as_version=4) for path in notebook_paths(course.root, "solutions", assignment)
    }
    exercises = [exercise for name in sorted(source) for exercise in exercises_of(source[name])]
    odd = list(range(0, len(exercises), 2))  # exercises 1, 3, 5, ... (0-based indices 0, 2, 4, ...)
    even = list(range(1, len(exercises), 2))
    last = len(exercises) - 1

    def solved(ks):
        return {name: solve_exercises(release[name], source[name], ks) for name in release}

    submissions = {
        "solutions": {name: source[name] for name in release},
        "blank": release,
        "odd_solved": solved(odd),
        "even_solved": solved(even),
        "only_last_solved": solved([last]),
    }
    total = sum(exercise.points for exercise in exercises)
    expected = {
        "solutions": total,
        "blank": 0.0,
        "odd_solved": sum(exercises[k].points for k in odd),
        "even_solved": sum(exercises[k].points for k in even),
        "only_last_solved": exercises[last].points,
    }
    for student, notebooks in submissions.items():
        submit(course, student, assignment, notebooks)
    autograde(course, assignment, timeout=120, students=list(submissions), echo=False)
    report = batch_rows(course, assignment, submissions)
    return Batch(course, assignment, exercises, expected, report, gradebook_scores(course, assignment))


def test_solutions_notebook_gets_full_marks(batch):
    total = sum(exercise.points for exercise in batch.exercises)
    assert batch.gradebook["solutions"]["total"] == total
    assert batch.report["solutions"]["status"] == "ok", batch.report["solutions"]["explanation"]
    assert batch.report["solutions"]["explanation"] == "every exercise passes"
    assert float(batch.report["solutions"]["score"]) == total == float(batch.report["solutions"]["max_score"])


def test_blank_release_notebook_gets_zero_without_breaking(batch):
    assert batch.gradebook["blank"]["total"] == 0
    row = batch.report["blank"]
    assert (row["status"], float(row["score"])) == ("ok", 0.0), row["explanation"]
    assert row["explanation"] == "not attempted: " + ", ".join(exercise.test_id for exercise in batch.exercises)


def test_release_notebook_runs_to_the_end_when_graded(batch):
    # The blank submission's graded notebook: every code cell ran, and the only errors are
    # the unanswered exercises' NotImplementedError in the checks cells. So the setup and
    # the checks themselves cannot break.
    for path in notebook_paths(batch.course.root, "autograded/blank", batch.assignment):
        notebook = nbformat.read(path, as_version=4)
        test_ids = {exercise.test_id for exercise in batch.exercises}
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            grade_id = nbgrader_meta(cell).get("grade_id", cell.get("id"))
            assert cell.execution_count is not None, f"{grade_id} did not run"
            errors = [output for output in cell.outputs if output.output_type == "error"]
            if grade_id in test_ids:
                assert [error.ename for error in errors] == ["NotImplementedError"], grade_id
            else:
                assert errors == [], f"{grade_id} raised {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("student", ["odd_solved", "even_solved", "only_last_solved"])
def test_solved_exercises_get_exactly_their_points(batch, student):
    grades = batch.gradebook[student]
    assert grades["total"] == batch.expected[student]
    solved = {
        "odd_solved": range(0, len(batch.exercises), 2),
        "even_solved": range(1, len(batch.exercises), 2),
        "only_last_solved": [len(batch.exercises) - 1],
    }[student]
    for k, exercise in enumerate(batch.exercises):
        assert grades[exercise.test_id] == (exercise.points if k in solved else 0.0), exercise.test_id
    assert float(batch.report[student]["score"]) == batch.expected[student]
    assert batch.report[student]["status"] == "ok"


# ---------------------------------------------------------------------------------------
# One batch of bad submissions, and a good student among them
# ---------------------------------------------------------------------------------------

BAD_TIMEOUT = 20  # seconds a cell may run: the setup cell (import torch) must fit even on a busy machine


@pytest.fixture(scope="module")
def bad_batch(course):
    if BAD_BATCH_ASSIGNMENT not in ASSIGNMENTS:
        pytest.skip(f"{BAD_BATCH_ASSIGNMENT} is not under solutions/")
    assignment = BAD_BATCH_ASSIGNMENT
    [release_path] = notebook_paths(course.root, "exercises", assignment)
    [source_path] = notebook_paths(course.root, "solutions", assignment)
    release = nbformat.read(release_path, as_version=4)
    source = nbformat.read(source_path, as_version=4)
    exercises = exercises_of(source)
    name = release_path.name
    everything = solve_exercises(release, source, range(len(exercises)))

    def solution_cell(notebook, k):
        return cell_by_id(notebook, exercises[k].solution_ids[0])

    def all_solved_but(change):
        notebook = copy.deepcopy(everything)
        change(notebook)
        return notebook

    def loop_forever(nb):  # sleeps rather than spins: the machine is shared
        solution_cell(nb, 0).source = "import time\nwhile True:\n    time.sleep(0.05)"

    def raise_error(nb):
        solution_cell(nb, 1).source = 'raise ValueError("my code is not ready")\n' + solution_cell(nb, 1).source

    def tamper(nb):
        solution_cell(nb, 2).source = cell_by_id(release, exercises[2].solution_ids[0]).source  # not solved...
        cell_by_id(nb, exercises[2].test_id).source = 'print("all checks pass")'  # ...but the checks "pass"

    def delete_cells(nb):  # the checks of a solved exercise; the solution and checks of another; the setup
        deleted = {exercises[3].test_id, *exercises[4].solution_ids, exercises[4].test_id, "setup"}
        nb.cells = [cell for cell in nb.cells if nbgrader_meta(cell).get("grade_id") not in deleted]

    def kill_kernel(nb):
        solution_cell(nb, 4).source = "import os\nos._exit(1)"

    def flood(nb):
        solution_cell(nb, 5).source += "\n\nfor i in range(5000):\n    print('debug line', i)"

    def delegate(nb):
        solution_cell(
            nb, 0
        ).source = "from reference_impl.tokenizer import simple_split\n\n\ndef split_text(text):\n    return simple_split(text)"

    submissions = {
        "good": {name: everything},
        "infinite_loop": {name: all_solved_but(loop_forever)},
        "exception": {name: all_solved_but(raise_error)},
        "tampered": {name: all_solved_but(tamper)},
        "deleted_cells": {name: all_solved_but(delete_cells)},
        "malformed": {name: nbformat.writes(everything)[:2000]},  # cut in the middle of the JSON
        "kernel_dies": {name: all_solved_but(kill_kernel)},
        "flood": {name: all_solved_but(flood)},
        "delegates": {name: all_solved_but(delegate)},
        "wrong_file": {"my_notebook.ipynb": everything},
    }
    for student, notebooks in submissions.items():
        submit(course, student, assignment, notebooks)
    before = sha256_tree(course.submitted)
    outcomes = autograde(course, assignment, timeout=BAD_TIMEOUT, students=list(submissions), echo=False)
    return {
        "course": course,
        "exercises": exercises,
        "outcomes": {outcome.student: outcome for outcome in outcomes},
        "report": batch_rows(course, assignment, submissions),
        "gradebook": gradebook_scores(course, assignment),
        "submitted_before": before,
        "submitted_after": sha256_tree(course.submitted),
        "students": list(submissions),
    }


def test_bad_batch_grades_every_student_with_an_explained_outcome(bad_batch):
    exercises = bad_batch["exercises"]
    total = sum(exercise.points for exercise in exercises)
    points = [exercise.points for exercise in exercises]
    expected = {  # student -> (status, score)
        "good": ("ok", total),
        "infinite_loop": ("timeout", total - points[0]),
        "exception": ("exception in cell", total - points[1]),
        "tampered": ("tampered test cell", total - points[2]),  # the original checks ran: not solved
        "deleted_cells": ("cell deleted", total - points[4]),  # the checks put back ran: pass, fail
        "malformed": ("malformed notebook", 0.0),
        "kernel_dies": ("kernel died", 0.0),
        "flood": ("output flood", total),
        "delegates": ("delegated to reference_impl", total - points[0]),
        "wrong_file": ("missing notebook", 0.0),
    }
    report = bad_batch["report"]
    assert sorted(report) == sorted(expected)
    got = {student: (row["status"], float(row["score"])) for student, row in report.items()}
    assert got == expected, {
        student: report[student]["explanation"] for student in report if got[student] != expected[student]
    }
    for student, row in report.items():
        assert list(row) == list(REPORT_COLUMNS)
        assert row["status"] in STATUSES
        assert float(row["max_score"]) == total
        assert bad_batch["gradebook"].get(student, {"total": 0.0})["total"] == float(row["score"]), student


def test_bad_batch_explanations_name_the_cell_and_the_cause(bad_batch):
    exercises = bad_batch["exercises"]
    explanation = {student: row["explanation"] for student, row in bad_batch["report"].items()}
    assert (
        f"{exercises[0].solution_ids[0]} ran longer than {BAD_TIMEOUT} s and was interrupted"
        in explanation["infinite_loop"]
    )
    assert explanation["exception"] == (
        f"{exercises[1].solution_ids[0]} raised ValueError: my code is not ready; "
        f"failing: {exercises[1].test_id} (NameError: name 'build_vocab' is not defined)"
    )
    assert f"the checks cell {exercises[2].test_id} was edited (graded with the original)" in explanation["tampered"]
    assert explanation["deleted_cells"] == (
        "the read-only cell setup was deleted (put back from the release); "
        f"the checks cell {exercises[3].test_id} was deleted (nbgrader put it back and ran it); "
        f"the solution cell {exercises[4].solution_ids[0]} was deleted (graded as unanswered); "
        f"the checks cell {exercises[4].test_id} was deleted (nbgrader put it back and ran it); "
        f"not attempted: {exercises[4].test_id}"
    )
    assert explanation["malformed"].startswith("ch02_exercises.ipynb is not a readable notebook: ")
    assert explanation["kernel_dies"].startswith("the kernel died while running the notebook")
    assert (
        "not graded: 0 for every exercise (nbgrader's log: reports/logs/ch02/kernel_dies.log)"
        in explanation["kernel_dies"]
    )
    assert (
        explanation["flood"]
        == f"{exercises[5].solution_ids[0]} printed more lines than the grader keeps; the graded notebook has the first ones"
    )
    assert (
        f"{exercises[0].test_id}: your code calls reference_impl.tokenizer.simple_split instead of implementing it"
        in explanation["delegates"]
    )
    assert explanation["wrong_file"] == (
        "ch02_exercises.ipynb is not in the submission (it holds: my_notebook.ipynb); "
        "not graded: 0 for every exercise (nbgrader's log: reports/logs/ch02/wrong_file.log)"
    )


def test_bad_batch_keeps_the_good_students_full_marks_in_the_gradebook(bad_batch):
    exercises = bad_batch["exercises"]
    grades = bad_batch["gradebook"]["good"]
    assert grades == {
        **{exercise.test_id: exercise.points for exercise in exercises},
        "total": sum(e.points for e in exercises),
    }


def test_failed_grading_replaces_grades_of_an_earlier_run_with_zero(bad_batch):
    from nbgrader.api import Gradebook

    course = bad_batch["course"]
    with Gradebook(course.db_url, course.course_id) as gradebook:  # as if an earlier run had graded it
        for notebook in gradebook.find_submission(BAD_BATCH_ASSIGNMENT, "kernel_dies").notebooks:
            for grade in notebook.grades:
                grade.auto_score = grade.max_score
        gradebook.db.commit()
    assert gradebook_scores(course, BAD_BATCH_ASSIGNMENT)["kernel_dies"]["total"] > 0
    record_zero(course, BAD_BATCH_ASSIGNMENT, "kernel_dies")
    assert set(gradebook_scores(course, BAD_BATCH_ASSIGNMENT)["kernel_dies"].values()) == {0.0}


def test_report_of_some_students_keeps_the_rows_of_the_others(batch, bad_batch):
    if batch.assignment != BAD_BATCH_ASSIGNMENT:
        pytest.skip("the bad batch grades another assignment")
    report = read_report(batch.course.root / "reports" / f"{BAD_BATCH_ASSIGNMENT}_outcomes.csv")
    assert sorted(report) == sorted([*batch.report, *bad_batch["students"]])


def test_bad_batch_never_changes_a_submitted_file(bad_batch):
    assert bad_batch["submitted_after"] == bad_batch["submitted_before"]


def test_flooded_output_is_cut_in_the_graded_notebook(bad_batch):
    course = bad_batch["course"]
    [path] = notebook_paths(course.root, "autograded/flood", BAD_BATCH_ASSIGNMENT)
    cell = cell_by_id(nbformat.read(path, as_version=4), bad_batch["exercises"][5].solution_ids[0])
    text = "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")
    assert len(text.splitlines()) == 1000
    assert text.splitlines()[-1] == "... Output truncated ..."


# ---------------------------------------------------------------------------------------
# Pieces that need no kernel
# ---------------------------------------------------------------------------------------


def small_release_notebook() -> nbformat.NotebookNode:
    def cell(kind, grade_id, source, **flags):
        meta = {
            "grade": False,
            "grade_id": grade_id,
            "locked": False,
            "schema_version": 3,
            "solution": False,
            "task": False,
            **flags,
        }
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        return make(source, id=grade_id.replace("_", "-"), metadata={"nbgrader": meta})

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Exercises", id="intro"),
        cell("code", "setup", "import torch", locked=True),
        cell("code", "ex1_solution", "def f():\n    raise NotImplementedError()", solution=True),
        cell("code", "ex1_tests", "assert f() == 1", grade=True, locked=True, points=1),
        cell("code", "ex2_solution", "def g():\n    raise NotImplementedError()", solution=True),
        cell("code", "ex2_tests", "assert g() == 2", grade=True, locked=True, points=2),
    ]
    return notebook


def grade_ids(notebook) -> list[str]:
    return [nbgrader_meta(cell).get("grade_id", cell.get("id")) for cell in notebook.cells]


def test_restore_deleted_cells_puts_back_solution_and_read_only_cells_in_place():
    release = small_release_notebook()
    submission = copy.deepcopy(release)
    cell_by_id(submission, "ex1_solution").source = "def f():\n    return 1"
    submission.cells = [
        cell
        for cell in submission.cells
        if nbgrader_meta(cell).get("grade_id") not in ("setup", "ex2_solution", "ex2_tests")
    ]
    restored = restore_deleted_cells(submission, release)
    assert restored == ["setup", "ex2_solution"]
    # The checks cell is left to nbgrader, which puts it back after the solution cell.
    assert grade_ids(submission) == ["intro", "setup", "ex1_solution", "ex1_tests", "ex2_solution"]
    assert cell_by_id(submission, "ex2_solution").source == "def g():\n    raise NotImplementedError()"
    assert cell_by_id(submission, "ex1_solution").source == "def f():\n    return 1"  # the student's answer stays
    nbformat.validate(submission)
    assert restore_deleted_cells(submission, release) == []


def test_outcome_status_is_the_most_telling_finding_and_the_explanation_lists_all():
    outcome = Outcome("alice")
    assert (outcome.status, outcome.explanation) == ("ok", "every exercise passes")
    outcome.details.append("failing: ex2_tests (CheckFailed: ids[0] is 1, expected 2)")
    assert outcome.status == "ok"
    outcome.add("output flood", "ex1_solution printed 2,000,000 characters")
    outcome.add("timeout", "ex3_solution ran longer than 60 s and was interrupted")
    assert outcome.status == "timeout"
    assert outcome.explanation == (
        "ex3_solution ran longer than 60 s and was interrupted; ex1_solution printed 2,000,000 characters; "
        "failing: ex2_tests (CheckFailed: ids[0] is 1, expected 2)"
    )
    with pytest.raises(ValueError, match="unknown status 'exploded'"):
        outcome.add("exploded", "?")


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------


def test_command_line_explains_a_wrong_course_folder_or_assignment(tmp_path, capsys, course):
    assert main(["--course-dir", str(tmp_path), "generate"]) == 1
    assert f"{tmp_path} has no nbgrader_config.py" in capsys.readouterr().err
    assert main(["--course-dir", str(course.root), "autograde", "ch99"]) == 1
    assert (
        f"no assignment 'ch99' in {course.source}: the assignments are {', '.join(ASSIGNMENTS)}"
        in capsys.readouterr().err
    )


def test_command_line_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "generate" in out and "autograde" in out
