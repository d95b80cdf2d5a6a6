"""``autograde``: grade every submission of an assignment, in parallel, each in a sandbox.

Each student is graded by nbgrader's own ``nbgrader autograde chNN --student <student>
--force``, in a process of its own, whose kernel runs in the sandbox
(``course_tools.grading.sandbox``). ``jobs`` students are graded at once; the gradebook
is used by one process at a time (``course_tools.grading.runner``). Around each run the
grader records what nbgrader does not say, the outcome of every student
(``reports/chNN_outcomes.csv`` and a printed table), and checks that the grading changed
nothing it must not (``course_tools.grading.integrity``).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils
from nbgrader.api import MissingEntry

from course_tools.grading import integrity, sandbox
from course_tools.grading.course import (
    STUDENT_ID,
    Course,
    GradingError,
    course_lock,
    one_line,
    read_notebook,
    relative,
    write_notebook,
)
from course_tools.grading.generate import generate
from course_tools.grading.report import Outcome, format_table, read_report, write_report
from course_tools.grading.runner import gradebook, run_nbgrader
from course_tools.nbgrader_plugins import TAMPERED

TRUNCATION_MARK = "... Output truncated ..."  # what nbgrader's LimitOutput leaves
DELEGATION_MARK = "instead of implementing it"  # the end of course_tools.checks' message
FLOOD_CHARS = 1_000_000  # a cell's text output beyond this is a flood even without many lines


@dataclass
class Released:
    """The locked and graded cells of an assignment, as released and as graded now."""

    notebooks: dict  # notebook name -> the release notebook of the current source (nbformat)
    accepted_checksums: dict[str, set[str]]  # grade_id -> checksums of every released version
    points: dict[str, float]  # grade_id of a checks cell -> its points


@dataclass(frozen=True)
class Settings:
    """How each student of a batch is graded."""

    timeout: int  # seconds a cell may run
    student_timeout: float  # seconds one student's grading may take
    report_dir: Path
    sandbox: bool = True
    jobs: int = 1

    def nbgrader_options(self, scratch: Path) -> list[str]:
        """nbgrader's options for one student; ``scratch``: a folder for the sandbox's
        connection files, removed by the caller even when the grading is killed."""
        options = [f"--Execute.timeout={self.timeout}"]
        if self.sandbox:
            # a backstop: no process of the kernel may use more CPU time than the whole
            # grading could, on every core (the wall-clock limit stops it first)
            cpu_seconds = int(self.student_timeout * (os.cpu_count() or 1))
            options.append(f"--SandboxedKernelManager.cpu_seconds={cpu_seconds}")
            options.append(f"--SandboxedKernelManager.scratch_root={scratch}")
        else:
            options.append("--SandboxedKernelManager.enabled=False")
        return options

    def environment(self) -> dict[str, str]:
        """The nbgrader process's environment: students graded side by side share the cores."""
        env = dict(os.environ)
        if self.jobs > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        return env


def autograde(
    course: Course,
    assignment: str,
    timeout: int = 60,
    student_timeout: float | None = None,
    students: list[str] | None = None,
    report_dir: Path | None = None,
    echo: bool = True,
    wait: bool = True,
    jobs: int | None = None,
    sandbox: bool = True,
) -> list[Outcome]:
    """Grade every student's submission of ``assignment``; write and print the outcomes.

    ``jobs`` students at once (default: the number of cores), each kernel in the sandbox
    unless ``sandbox=False`` (the report and the export then say so). Raises
    ``GradingError`` when the sandbox cannot start, and ``integrity.IntegrityError`` (after
    writing the report of the students graded) when a grading changed what it must not.

    It holds the course's lock (see ``course_lock``): a second grading of the course at the
    same time waits for this one (or, with ``wait=False``, refuses to start)."""
    with course_lock(course, wait=wait, echo=echo):
        return _autograde(course, assignment, timeout, student_timeout, students, report_dir, echo, jobs, sandbox)


def _autograde(
    course, assignment, timeout, student_timeout, students, report_dir, echo, jobs, use_sandbox
) -> list[Outcome]:
    course.check_assignment(assignment)
    if use_sandbox:
        try:
            sandbox.check_available()
        except sandbox.SandboxUnavailable as error:
            raise GradingError(str(error)) from None
    if student_timeout is None:
        student_timeout = max(600.0, 10.0 * timeout)
    report_dir = Path(report_dir) if report_dir is not None else course.root / "reports"
    submitted = (
        sorted(path.parent.name for path in course.submitted.glob(f"*/{assignment}") if path.is_dir())
        if course.submitted.is_dir()
        else []
    )
    if students:
        missing = sorted(set(students) - set(submitted))
        if missing:
            raise GradingError(f"no submission of {assignment} in {course.submitted} for: {', '.join(missing)}")
        submitted = [student for student in submitted if student in students]
    if not submitted:
        raise GradingError(f"no submissions: expected folders {course.submitted}/<student>/{assignment}/")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(submitted)))
    settings = Settings(timeout, student_timeout, report_dir, use_sandbox, jobs)
    if echo and not use_sandbox:
        print("WARNING: grading without the sandbox (--unsafe-no-sandbox): the students' code runs with your rights")

    released = sync_gradebook(course, assignment)
    outcomes, stopped = _grade_all(course, assignment, submitted, released, settings, echo)

    csv_path = report_dir / f"{assignment}_outcomes.csv"
    if students and csv_path.exists():  # grading some students again: keep the others' rows
        graded = {outcome.student for outcome in outcomes}
        kept = [row for student, row in read_report(csv_path).items() if student not in graded]
        write_report(outcomes, csv_path, kept_rows=kept)
    else:
        write_report(outcomes, csv_path)
    manifests = {
        o.student: integrity.sha256_tree(integrity.graded_folder(course, assignment, o.student)) for o in outcomes
    }
    integrity.write_graded_manifest(report_dir, assignment, manifests)
    if echo:
        print()
        print(format_table(outcomes))
        print(
            f"\nOutcomes written to {csv_path}; nbgrader's log of each student is in {report_dir / 'logs' / assignment}/"
        )
    if stopped:
        raise integrity.IntegrityError(stopped)
    return outcomes


def _grade_all(course, assignment, students, released, settings: Settings, echo) -> tuple[list[Outcome], str]:
    """Grade ``students``, ``settings.jobs`` at a time, checking the course after each one.
    Returns the outcomes (in the students' order) and, when a check failed, why the batch
    stopped (the students not yet started are left ungraded)."""
    before = integrity.snapshot(course)
    outcomes: dict[str, Outcome] = {}
    graded_folders: dict[str, dict[str, str]] = {}
    queue = list(students)
    stopped = ""
    with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        running: dict[Future, tuple[str, float]] = {}

        def start_next() -> None:
            student = queue.pop(0)
            future = pool.submit(grade_student, course, assignment, student, released, settings)
            running[future] = (student, time.monotonic())

        while queue and len(running) < settings.jobs:
            start_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                student, started = running.pop(future)
                outcome = future.result()
                outcomes[student] = outcome
                if echo:
                    print(
                        f"  {student}: {outcome.status} ({outcome.score:g}/{outcome.max_score:g}, "
                        f"{time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
                changes = _changes(course, assignment, before, outcomes, graded_folders)
                graded_folders[student] = integrity.sha256_tree(integrity.graded_folder(course, assignment, student))
                if changes and not stopped:
                    beside = sorted(other for other, _ in running.values())
                    stopped = _stop_message(student, beside, changes, queue)
                    outcome.add("changed the course", "; ".join(changes[:5]))
                    queue.clear()  # those still running finish, and are reported
            while queue and len(running) < settings.jobs and not stopped:
                start_next()
    return [outcomes[student] for student in students if student in outcomes], stopped


def _changes(course, assignment, before, outcomes: dict[str, Outcome], graded_folders) -> list[str]:
    """Everything that differs from what the batch started with or recorded so far."""
    changes = integrity.differences(before, integrity.snapshot(course))
    recorded = {student: outcome.score for student, outcome in outcomes.items()}
    changes += integrity.score_disagreements(recorded, gradebook_scores(course, assignment))
    for student, hashes in graded_folders.items():
        now = integrity.sha256_tree(integrity.graded_folder(course, assignment, student))
        changes += [
            f"autograded/{student}/{assignment}/{change.split('/', 1)[1]}"
            for change in integrity.differences({"/": hashes}, {"/": now})
        ]
    return changes


def _stop_message(student: str, beside: list[str], changes: list[str], not_started: list[str]) -> str:
    who = f"the grading of {student}"
    if beside:
        who += f" (or of {', '.join(beside)}, graded at the same time)"
    shown = "; ".join(changes[:10]) + (f"; and {len(changes) - 10} more" if len(changes) > 10 else "")
    left = f" {len(not_started)} student(s) were not graded: {', '.join(not_started)}." if not_started else ""
    return (
        f"the batch stopped: {who} changed what grading must leave alone: {shown}.{left} "
        "Restore the course from version control and the submissions from their collected copy, "
        "then look at that student's notebook before grading again."
    )


def unsafe_entries(submission: Path) -> list[str]:
    """The entries of a submission that are not plain files or folders (links above all:
    nbgrader would copy what they point to, anywhere on the grader's machine)."""
    found = []
    for folder, dirs, files in os.walk(submission, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or path.is_symlink():
                found.append(str(path.relative_to(submission)))
    return sorted(found)


def _unsafe_names(folder: str, names: list[str]) -> list[str]:
    ignored = []
    for name in names:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            ignored.append(name)
    return ignored


def sync_gradebook(course: Course, assignment: str) -> Released:
    """Record the current source of ``assignment`` in the gradebook, as ``generate`` does,
    without touching ``exercises/``; return what a submission is checked against."""

    with tempfile.TemporaryDirectory(prefix="release-") as release_dir:
        notebooks = generate(course, [assignment], release_dir=Path(release_dir))
        current = {path.stem: read_notebook(path) for path in notebooks}

    accepted: dict[str, set[str]] = {}
    points: dict[str, float] = {}
    # The committed release counts too: the students may have an older version of a cell.
    committed = [read_notebook(path) for path in sorted((course.release / assignment).glob("*.ipynb"))]
    for notebook in [*current.values(), *committed]:
        for cell in notebook.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if "grade_id" in meta and meta.get("locked") and "checksum" in meta:
                accepted.setdefault(meta["grade_id"], set()).add(meta["checksum"])
    # And the source version, as the gradebook has it (the solutions notebook has hidden checks).
    with gradebook(course) as book:
        for name in current:
            for cell in book.find_notebook(name, assignment).source_cells:
                if cell.locked:
                    accepted.setdefault(cell.name, set()).add(cell.checksum)
    for notebook in current.values():
        for cell in notebook.cells:
            if nbgrader_utils.is_grade(cell):
                points[cell.metadata.nbgrader.grade_id] = float(cell.metadata.nbgrader.points)
    return Released(current, accepted, points)


def grade_student(course: Course, assignment: str, student: str, released: Released, settings: Settings) -> Outcome:
    """Grade one student's submission with ``nbgrader autograde`` in a process of its own (its
    kernel in the sandbox); the outcome says what happened and what the gradebook now holds."""
    timeout, student_timeout, report_dir = settings.timeout, settings.student_timeout, settings.report_dir
    outcome = Outcome(student, max_score=sum(released.points.values()), sandboxed=settings.sandbox)
    if not STUDENT_ID.fullmatch(student):
        outcome.add(
            "grading error", f"the folder name {student!r} is not a usable student id (letters, digits, _ . @ + -)"
        )
        return outcome

    submission = course.submitted / student / assignment
    unsafe = unsafe_entries(submission)
    if unsafe:
        outcome.add(
            "unsafe file", f"{', '.join(unsafe)}: not a plain file or folder (a link?), left out of the grading"
        )
    restored = inspect_submission(submission, released, outcome)

    log_path = report_dir / "logs" / assignment / f"{student}.log"
    args = ["autograde", assignment, "--student", student, "--force"]
    with (
        tempfile.TemporaryDirectory(prefix="submitted-") as staging,
        tempfile.TemporaryDirectory(prefix="sandbox-") as scratch,
    ):
        args += settings.nbgrader_options(Path(scratch))
        if restored or unsafe:  # grade a repaired copy; the submission stays as it is
            copy = Path(staging) / student / assignment
            shutil.copytree(submission, copy, symlinks=True, ignore=lambda folder, names: _unsafe_names(folder, names))
            for name, notebook in restored.items():
                write_notebook(notebook, copy / f"{name}.ipynb")
            args.append(f"--CourseDirectory.submitted_directory={staging}")
        status, log = run_nbgrader(course, args, log_path, time_limit=student_timeout, env=settings.environment())
    graded_dir = course.autograded / student / assignment
    graded = {name: graded_dir / f"{name}.ipynb" for name in released.notebooks}
    completed = status == 0 and all(path.exists() for path in graded.values())

    if status is None:
        outcome.add("timeout", f"grading took longer than {student_timeout:g} s and was stopped")
    elif "DeadKernelError" in log or "Kernel died" in log:
        outcome.add("kernel died", "the kernel died while running the notebook (os._exit, a crash or out of memory)")
    elif not completed and "CellTimeoutError" in log:
        cell = _timed_out_cell(log)
        outcome.add("timeout", f"a cell{cell} ran longer than {timeout} s and did not stop when interrupted")
    elif not completed and not any(s in ("malformed notebook", "missing notebook") for s, _ in outcome.findings):
        last_error = next((line.strip() for line in reversed(log.splitlines()) if "Error" in line), "see the log")
        outcome.add("grading error", f"nbgrader failed (exit status {status}): {last_error}")

    if completed:
        scores = gradebook_cell_scores(course, assignment, student)
        for path in graded.values():
            notebook = read_notebook(path)
            inspect_graded_notebook(notebook, timeout, outcome)
            explain_lost_points(notebook, scores, outcome)
    else:
        if graded_dir.exists():  # a stopped run may leave half a folder behind
            shutil.rmtree(graded_dir, ignore_errors=True)
        record_zero(course, assignment, student)
        outcome.details.append(f"not graded: 0 for every exercise (nbgrader's log: {relative(log_path, course.root)})")

    outcome.score = gradebook_score(course, assignment, student)
    return outcome


def inspect_submission(submission: Path, released: Released, outcome: Outcome) -> dict:
    """Findings about the submitted files themselves: unreadable, missing, edited, deleted
    or duplicated cells. Returns the notebooks to grade in place of the submitted ones: those
    with deleted solution or read-only cells put back (see ``restore_deleted_cells``) or
    duplicated cells left out (see ``remove_duplicated_cells``)."""

    restored = {}
    for name, release_nb in released.notebooks.items():
        path = submission / f"{name}.ipynb"
        if not path.exists():
            present = ", ".join(sorted(p.name for p in submission.iterdir())) or "nothing"
            outcome.add("missing notebook", f"{path.name} is not in the submission (it holds: {present})")
            continue
        try:
            notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            nbformat.validate(notebook)
        except Exception as error:  # JSON, encoding or notebook-format errors
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            outcome.add("malformed notebook", f"{path.name} is not a readable notebook: {message}")
            continue

        duplicated = remove_duplicated_cells(notebook)
        for grade_id, copies in duplicated.items():
            outcome.add(
                "duplicated cell",
                f"the cell {grade_id} appears {copies} times (a copy keeps nbgrader's id): "
                f"the first one was graded, the {'other' if copies == 2 else f'{copies - 1} others'} left out",
            )
        submitted_cells = {}
        for cell in notebook.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id is not None:
                submitted_cells[grade_id] = cell
        for release_cell in release_nb["cells"]:
            meta = release_cell.get("metadata", {}).get("nbgrader", {})
            grade_id = meta.get("grade_id")
            if grade_id is None:
                continue
            what = _describe_cell(meta)
            if grade_id not in submitted_cells:
                if meta.get("grade"):
                    consequence = "nbgrader put it back and ran it"
                elif meta.get("solution"):
                    consequence = "graded as unanswered"
                else:
                    consequence = "put back from the release"
                outcome.add("cell deleted", f"the {what} {grade_id} was deleted ({consequence})")
            elif meta.get("locked"):
                try:
                    checksum = nbgrader_utils.compute_checksum(submitted_cells[grade_id])
                except Exception:  # metadata edited beyond recognition
                    checksum = None
                if checksum not in released.accepted_checksums.get(grade_id, set()):
                    outcome.add("tampered test cell", f"the {what} {grade_id} was edited (graded with the original)")
        if restore_deleted_cells(notebook, release_nb) or duplicated:
            restored[name] = notebook
    return restored


def remove_duplicated_cells(notebook) -> dict[str, int]:
    """Keep the first of the cells that share an nbgrader grade id and leave out the others
    (copy and paste in Jupyter keeps the id: nbgrader 0.9 would then fail on the whole
    notebook with ``KeyError: 'grade_id'`` and give 0 for everything); returns how many
    copies of each duplicated id there were."""
    counts: dict[str, int] = {}
    kept = []
    for cell in notebook.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            counts[grade_id] = counts.get(grade_id, 0) + 1
            if counts[grade_id] > 1:
                continue
        kept.append(cell)
    notebook.cells = kept
    return {grade_id: n for grade_id, n in counts.items() if n > 1}


def restore_deleted_cells(notebook, release_nb) -> list[str]:
    """Put back the solution and read-only cells that a student deleted, from the release
    notebook (so a solution cell comes back unanswered); returns their grade ids.

    Each goes right after the nearest cell before it in the release that the notebook
    still has (known by its grade id, or its cell id). nbgrader puts deleted checks cells
    back itself, after the cell that comes
    before them in the source, but fails on the whole notebook (a KeyError) when that cell
    is gone too: a student who deletes an exercise's solution and checks together would
    get 0 for every exercise.
    """

    def key(cell) -> str | None:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        return grade_id if grade_id is not None else cell.get("id")

    restored = []
    previous = None  # the key of the last release cell the notebook has (or has again)
    for release_cell in release_nb["cells"]:
        meta = release_cell.get("metadata", {}).get("nbgrader", {})
        wanted = key(release_cell)
        present = [key(cell) for cell in notebook.cells]
        if "grade_id" in meta and wanted not in present and not meta.get("grade"):
            cell = nbformat.from_dict(release_cell)
            if notebook.get("nbformat_minor", 5) < 5:
                cell.pop("id", None)  # cell ids came with nbformat 4.5
            position = present.index(previous) + 1 if previous is not None else 0
            notebook.cells.insert(position, cell)
            restored.append(wanted)
        if wanted is not None and (wanted in present or wanted in restored):
            previous = wanted
    return restored


def inspect_graded_notebook(notebook, timeout: int, outcome: Outcome) -> None:
    """Findings from the outputs of the notebook that nbgrader ran."""
    not_attempted, failing = [], []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        label = meta.get("grade_id") or f"cell {index + 1}"
        outputs = cell.get("outputs", [])
        text = "".join(_text_of(output) for output in outputs)
        if TRUNCATION_MARK in text:
            outcome.add(
                "output flood",
                f"{label} printed more lines than the grader keeps; the graded notebook has the first ones",
            )
        elif len(text) > FLOOD_CHARS:
            outcome.add("output flood", f"{label} printed {len(text):,} characters")
        for output in outputs:
            if output.get("output_type") != "error":
                continue
            ename, evalue = output.get("ename", ""), one_line(output.get("evalue", ""))
            if ename == "CellTimeoutError":
                outcome.add("timeout", f"{label} ran longer than {timeout} s and was interrupted")
            elif ename == TAMPERED:
                outcome.add("checks tampered with", f"{label}: {one_line(output.get('evalue', ''), 400)}")
            elif DELEGATION_MARK in evalue:
                outcome.add("delegated to reference_impl", f"{label}: {evalue}")
            elif meta.get("grade") and ename == "NotImplementedError":
                not_attempted.append(label)
            elif meta.get("grade"):
                failing.append(f"{label} ({ename}: {one_line(evalue, 80)})" if evalue else f"{label} ({ename})")
            elif ename not in ("NotImplementedError", "KeyboardInterrupt"):
                outcome.add("exception in cell", f"{label} raised {ename}: {evalue}")
    if failing:
        outcome.details.append("failing: " + ", ".join(failing))
    if not_attempted:
        outcome.details.append("not attempted: " + ", ".join(not_attempted))


def explain_lost_points(notebook, scores: dict[str, float], outcome: Outcome) -> None:
    """Say why a checks cell that raised no error got fewer than its points from nbgrader."""
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("grade_id") not in scores:
            continue
        score, points = scores[meta["grade_id"]], float(meta.get("points", 0))
        outputs = cell.get("outputs", [])
        if score >= points or any(output.get("output_type") == "error" for output in outputs):
            continue
        if any(output.get("output_type") == "stream" and output.get("name") == "stderr" for output in outputs):
            reason = "it wrote to stderr, which nbgrader scores 0 (grade with the course's nbgrader_config.py)"
        elif any(output.get("output_type") == "execute_result" for output in outputs):
            reason = "its last line shows a value, which nbgrader reads as partial credit"
        else:
            reason = "nbgrader gave it that score (see the graded notebook)"
        outcome.details.append(f"{meta['grade_id']} scored {score:g} of {points:g} although no check failed: {reason}")


def gradebook_cell_scores(course: Course, assignment: str, student: str) -> dict[str, float]:
    """grade id -> score of each checks cell of a submission, as the gradebook has them."""
    with gradebook(course) as book:
        try:
            submission = book.find_submission(assignment, student)
        except MissingEntry:
            return {}
        return {grade.name: float(grade.score) for notebook in submission.notebooks for grade in notebook.grades}


def record_zero(course: Course, assignment: str, student: str) -> None:
    """Give every graded cell of a submission that nbgrader could not grade an explicit 0
    (as nbgrader does for a missing notebook), replacing any grade of an earlier run."""

    with gradebook(course) as book:
        book.update_or_create_student(student)
        try:
            submission = book.find_submission(assignment, student)
        except MissingEntry:
            submission = book.add_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        book.db.commit()


def gradebook_score(course: Course, assignment: str, student: str) -> float:

    with gradebook(course) as book:
        try:
            return float(book.find_submission(assignment, student).score)
        except MissingEntry:
            return 0.0


def _timed_out_cell(log: str) -> str:
    """`` (`first line of its code`)``: nbclient's error shows the start of the cell."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "preview of the cell contents" in line and i + 2 < len(lines):
            return f" (`{one_line(lines[i + 2], 60)}`)"
    return ""


def _describe_cell(meta: dict) -> str:
    if meta.get("grade"):
        return "checks cell"
    if meta.get("solution"):
        return "solution cell"
    return "read-only cell"


def _text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return text if isinstance(text, str) else "".join(text)
    data = output.get("data", {}).get("text/plain", "")
    return data if isinstance(data, str) else "".join(data)


def gradebook_scores(course: Course, assignment: str) -> dict[str, float]:
    """student -> total score of ``assignment`` in the gradebook."""
    with gradebook(course) as book:
        try:
            submissions = book.assignment_submissions(assignment)
        except MissingEntry:
            return {}
        return {submission.student.id: float(submission.score) for submission in submissions}
