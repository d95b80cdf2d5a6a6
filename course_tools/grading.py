"""The instructor's commands: make the exercise notebooks, and grade a class robustly.

    python -m course_tools.grading generate [chNN ...]
    python -m course_tools.grading autograde chNN [--timeout 60] [--student ID ...]
    python -m course_tools.grading feedback chNN [--student ID ...]
    python -m course_tools.grading export [--to grades.csv]

Run them in the course folder (the one with ``nbgrader_config.py``) or pass ``--course-dir``.

``generate`` runs ``nbgrader generate_assignment chNN --force`` for every assignment under
``solutions/`` (or the ones named): the student versions land in ``exercises/chNN/`` and the
gradebook (``gradebook.db``) learns the assignment. The output is the same, byte for byte,
every time.

``autograde`` grades every student in ``submitted/<student>/chNN/`` with nbgrader's own
``nbgrader autograde chNN --student <student> --force``, one student at a time, each in a
process of its own, so that nothing a student's notebook does (loop forever, kill its
kernel, print a million lines, edit the checks) can stop the batch or touch another
student's grades. Around each run it records what nbgrader does not say: the outcome of
every student, in ``reports/chNN_outcomes.csv`` and a printed table. The students'
submitted files are only ever read. The checks run guarded (``nbgrader_config.py`` names
the course's preprocessors, ``course_tools.nbgrader_plugins``): a notebook that rebinds or
patches what the checks use gets 0 for those exercises, and stderr output costs nothing.

``feedback`` writes the feedback pages of what was graded last (``nbgrader
generate_feedback --force``: the outcome on top, no hidden checks, one-line errors).
``export`` is nbgrader's grade export with each student's status and explanation joined on.

Each command holds the course's lock (``.grading.lock``): a second command on the same
course waits for the first to finish (``--no-wait``: refuses to start).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from nbgrader import utils as nbgrader_utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps.nbgraderapp import NbGraderApp
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

from course_tools.nbgrader_plugins import TAMPERED, student_facing

ASSIGNMENT_NAME = re.compile(r"ch\d\d")
# A student id becomes part of nbgrader's path patterns (globs): keep to safe characters.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
TRUNCATION_MARK = "... Output truncated ..."  # what nbgrader's LimitOutput leaves
DELEGATION_MARK = "instead of implementing it"  # the end of course_tools.checks' message
FLOOD_CHARS = 1_000_000  # a cell's text output beyond this is a flood even without many lines

# The outcomes, from the one that explains a student's grade best to the mildest.
STATUSES = (
    "malformed notebook",
    "missing notebook",
    "kernel died",
    "timeout",
    "checks tampered with",
    "tampered test cell",
    "duplicated cell",
    "cell deleted",
    "delegated to reference_impl",
    "output flood",
    "exception in cell",
    "grading error",
    "ok",
)


class GradingError(RuntimeError):
    """The command cannot run (no such assignment, not a course folder...)."""


# ---------------------------------------------------------------------------------------
# The course folder and nbgrader
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Course:
    """The course folder and the nbgrader settings of its ``nbgrader_config.py``."""

    root: Path
    source: Path
    release: Path
    submitted: Path
    autograded: Path
    db_url: str
    course_id: str

    @classmethod
    def at(cls, root: str | Path) -> Course:
        root = Path(root).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise GradingError(f"{root} has no nbgrader_config.py: run this in the course folder or pass --course-dir")

        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
        coursedir = CourseDirectory(config=config, root=str(root))
        db_url = coursedir.db_url
        relative_sqlite = db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////")
        if relative_sqlite:  # nbgrader runs in the course folder: relative paths start there
            db_url = f"sqlite:///{root / db_url[len('sqlite:///') :]}"
        return cls(
            root=root,
            source=root / coursedir.source_directory,
            release=root / coursedir.release_directory,
            submitted=root / coursedir.submitted_directory,
            autograded=root / coursedir.autograded_directory,
            db_url=db_url,
            course_id=coursedir.course_id,
        )

    def assignments(self) -> list[str]:
        return find_assignments(self.source)

    def check_assignment(self, assignment: str) -> None:
        known = self.assignments()
        if assignment not in known:
            raise GradingError(
                f"no assignment {assignment!r} in {self.source}: "
                f"the assignments are {', '.join(known) or 'none'} (folders chNN holding a notebook)"
            )


class CourseBusy(GradingError):
    """Another command of ``course_tools.grading`` holds the course's lock."""


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> how many times this process holds it


@contextmanager
def course_lock(course: Course, wait: bool = True, echo: bool = True):
    """Hold the course's lock (``.grading.lock`` in the course folder) for a command that
    writes the gradebook, ``autograded/`` or ``feedback/``: two gradings of one course at
    once would run the same students' kernels side by side and overwrite each other's
    folders and grades. ``wait`` waits for the other command to finish; otherwise
    ``CourseBusy`` says who holds it. The lock goes with the process that holds it, also
    when it is killed. A process may take it again while it holds it."""
    path = course.root / ".grading.lock"
    if _HELD_LOCKS.get(path):
        _HELD_LOCKS[path] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[path] -= 1
        return
    handle = open(path, "a+", encoding="utf-8")
    try:
        if not _try_lock(handle):
            holder = _lock_holder(path, patience_s=2.0)
            if not wait:
                raise CourseBusy(
                    f"another grading command is running on {course.root} ({holder}); "
                    "run this one when it has finished, or without --no-wait to wait for it"
                )
            if echo:
                print(f"waiting for another grading command on this course to finish ({holder}) ...", flush=True)
            while not _try_lock(handle):
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        command = " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv))
        handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}\n")
        handle.flush()
        _HELD_LOCKS[path] = 1
        try:
            yield
        finally:
            _HELD_LOCKS.pop(path, None)
            handle.seek(0)
            handle.truncate()
            handle.flush()
            _unlock(handle)
    finally:
        handle.close()


def _try_lock(handle) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(handle) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _lock_holder(path: Path, patience_s: float = 0.0) -> str:
    """Who holds the lock, as its holder wrote it. A holder writes just after it takes the lock,
    so an empty file is read again for up to ``patience_s`` seconds before saying so."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text or time.monotonic() >= deadline:
            return text or "its process id is not recorded yet"
        time.sleep(0.05)


def find_assignments(source: Path) -> list[str]:
    """Every ``chNN`` folder of the source directory (``solutions/``) that holds a notebook."""
    source = Path(source)
    if not source.is_dir():
        return []
    return sorted(
        path.name
        for path in source.iterdir()
        if path.is_dir() and ASSIGNMENT_NAME.fullmatch(path.name) and any(path.glob("*.ipynb"))
    )


def run_nbgrader(
    course: Course, args: list[str], log_path: Path, time_limit: float | None = None
) -> tuple[int | None, str]:
    """Run nbgrader's command line, ``nbgrader <args>``, in the course folder, in a process of
    its own; its output goes to ``log_path``.

    Returns (exit status, log text); the status is None when the run went past
    ``time_limit`` seconds and was killed, with the kernel it started.

    The process is forked from a server that has imported nbgrader once (importing it
    costs seconds of CPU), so that a batch pays for it once, not once per student.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    env = dict(os.environ)
    # nbgrader runs the `alembic` command by name: find the one of this Python environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    process = _nbgrader_context().Process(
        target=_nbgrader_main, args=(list(args), str(course.root), env, str(log_path))
    )
    process.start()
    process.join(time_limit)
    if process.is_alive():
        _kill_tree(process.pid)
        process.join()
        status = None
    else:
        status = process.exitcode
    return status, log_path.read_text(encoding="utf-8", errors="replace")


_CONTEXT = None


def _nbgrader_context():
    """A multiprocessing context whose new processes start with nbgrader imported."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            # The new processes then import this module (cheap: no torch) to find _nbgrader_main.
            _CONTEXT.set_forkserver_preload(["nbgrader.apps.nbgraderapp"])
        else:  # Windows: a fresh interpreter each time
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


def _nbgrader_main(args: list[str], cwd: str, env: dict[str, str], log_path: str) -> None:
    """The body of an nbgrader process: ``nbgrader <args>`` with its output in ``log_path``."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(env)  # the caller's environment now, not the server's when it started
    os.chdir(cwd)
    try:
        NbGraderApp.launch_instance(argv=args)
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no atexit handlers of the server's copy


def _kill_tree(pid: int) -> None:
    """Kill a process and its children (the kernel runs in a session of its own)."""
    try:
        parent = psutil.Process(pid)
        processes = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


# ---------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------


def generate(
    course: Course, assignments: list[str] | None = None, release_dir: Path | None = None, wait: bool = True
) -> list[Path]:
    """Make the student version of each assignment with nbgrader; returns the notebooks.

    ``release_dir`` writes them elsewhere than the release directory (``exercises/``);
    the gradebook is updated either way.
    """
    with course_lock(course, wait=wait):
        return _generate(course, assignments, release_dir)


def _generate(course: Course, assignments: list[str] | None, release_dir: Path | None) -> list[Path]:
    assignments = assignments or course.assignments()
    if not assignments:
        raise GradingError(f"no assignments to generate: {course.source} has no chNN folder holding a notebook")
    for assignment in assignments:
        course.check_assignment(assignment)
    release = Path(release_dir) if release_dir is not None else course.release
    written = []
    for assignment in assignments:
        args = ["generate_assignment", assignment, "--force"]
        if release_dir is not None:
            args.append(f"--CourseDirectory.release_directory={release}")
        log_path = Path(tempfile.mkstemp(prefix=f"nbgrader-generate-{assignment}-", suffix=".log")[1])
        try:
            status, log = run_nbgrader(course, args, log_path)
        finally:
            log_path.unlink(missing_ok=True)
        notebooks = sorted((release / assignment).glob("*.ipynb"))
        if status != 0 or not notebooks:
            raise GradingError(f"nbgrader generate_assignment {assignment} failed (exit status {status}):\n{log}")
        written.extend(notebooks)
    return written


# ---------------------------------------------------------------------------------------
# autograde
# ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one student's submission."""

    student: str
    score: float = 0.0
    max_score: float = 0.0
    findings: list[tuple[str, str]] = field(default_factory=list)  # (status, what happened)
    details: list[str] = field(default_factory=list)  # which exercises fail, for the explanation

    def add(self, status: str, explanation: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; the statuses are {STATUSES}")
        self.findings.append((status, explanation))

    @property
    def status(self) -> str:
        return min((status for status, _ in self.findings), key=STATUSES.index, default="ok")

    @property
    def explanation(self) -> str:
        ordered = sorted(self.findings, key=lambda finding: STATUSES.index(finding[0]))
        parts = [text for _, text in ordered] + self.details
        return "; ".join(parts) if parts else "every exercise passes"


@dataclass
class Released:
    """The locked and graded cells of an assignment, as released and as graded now."""

    notebooks: dict  # notebook name -> the release notebook of the current source (nbformat)
    accepted_checksums: dict[str, set[str]]  # grade_id -> checksums of every released version
    points: dict[str, float]  # grade_id of a checks cell -> its points


def autograde(
    course: Course,
    assignment: str,
    timeout: int = 60,
    student_timeout: float | None = None,
    students: list[str] | None = None,
    report_dir: Path | None = None,
    echo: bool = True,
    wait: bool = True,
) -> list[Outcome]:
    """Grade every student's submission of ``assignment``; write and print the outcomes.

    It holds the course's lock (see ``course_lock``): a second grading of the course at the
    same time waits for this one (or, with ``wait=False``, refuses to start)."""
    with course_lock(course, wait=wait, echo=echo):
        return _autograde(course, assignment, timeout, student_timeout, students, report_dir, echo)


def _autograde(course, assignment, timeout, student_timeout, students, report_dir, echo) -> list[Outcome]:
    course.check_assignment(assignment)
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

    released = sync_gradebook(course, assignment)
    outcomes = []
    for student in submitted:
        started = time.monotonic()
        outcome = grade_student(course, assignment, student, released, timeout, student_timeout, report_dir)
        outcomes.append(outcome)
        if echo:
            print(
                f"  {student}: {outcome.status} ({outcome.score:g}/{outcome.max_score:g}, {time.monotonic() - started:.0f} s)",
                flush=True,
            )

    csv_path = report_dir / f"{assignment}_outcomes.csv"
    if students and csv_path.exists():  # grading some students again: keep the others' rows
        graded = {outcome.student for outcome in outcomes}
        kept = [row for student, row in read_report(csv_path).items() if student not in graded]
        write_report(outcomes, csv_path, kept_rows=kept)
    else:
        write_report(outcomes, csv_path)
    if echo:
        print()
        print(format_table(outcomes))
        print(
            f"\nOutcomes written to {csv_path}; nbgrader's log of each student is in {report_dir / 'logs' / assignment}/"
        )
    return outcomes


def sync_gradebook(course: Course, assignment: str) -> Released:
    """Record the current source of ``assignment`` in the gradebook, as ``generate`` does,
    without touching ``exercises/``; return what a submission is checked against."""

    with tempfile.TemporaryDirectory(prefix="release-") as release_dir:
        notebooks = generate(course, [assignment], release_dir=Path(release_dir))
        current = {path.stem: _read_notebook(path) for path in notebooks}

    accepted: dict[str, set[str]] = {}
    points: dict[str, float] = {}
    # The committed release counts too: the students may have an older version of a cell.
    committed = [_read_notebook(path) for path in sorted((course.release / assignment).glob("*.ipynb"))]
    for notebook in [*current.values(), *committed]:
        for cell in notebook.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if "grade_id" in meta and meta.get("locked") and "checksum" in meta:
                accepted.setdefault(meta["grade_id"], set()).add(meta["checksum"])
    # And the source version, as the gradebook has it (the solutions notebook has hidden checks).
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for name in current:
            for cell in gradebook.find_notebook(name, assignment).source_cells:
                if cell.locked:
                    accepted.setdefault(cell.name, set()).add(cell.checksum)
    for notebook in current.values():
        for cell in notebook.cells:
            if nbgrader_utils.is_grade(cell):
                points[cell.metadata.nbgrader.grade_id] = float(cell.metadata.nbgrader.points)
    return Released(current, accepted, points)


def grade_student(
    course: Course,
    assignment: str,
    student: str,
    released: Released,
    timeout: int,
    student_timeout: float,
    report_dir: Path,
) -> Outcome:
    outcome = Outcome(student, max_score=sum(released.points.values()))
    if not STUDENT_ID.fullmatch(student):
        outcome.add(
            "grading error", f"the folder name {student!r} is not a usable student id (letters, digits, _ . @ + -)"
        )
        return outcome

    submission = course.submitted / student / assignment
    restored = inspect_submission(submission, released, outcome)

    log_path = report_dir / "logs" / assignment / f"{student}.log"
    args = ["autograde", assignment, "--student", student, "--force", f"--Execute.timeout={timeout}"]
    with tempfile.TemporaryDirectory(prefix="submitted-") as staging:
        if restored:  # grade a repaired copy (cells put back or left out); the submission stays as it is
            copy = Path(staging) / student / assignment
            shutil.copytree(submission, copy)
            for name, notebook in restored.items():
                _write_notebook(notebook, copy / f"{name}.ipynb")
            args.append(f"--CourseDirectory.submitted_directory={staging}")
        status, log = run_nbgrader(course, args, log_path, time_limit=student_timeout)
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
            notebook = _read_notebook(path)
            inspect_graded_notebook(notebook, timeout, outcome)
            explain_lost_points(notebook, scores, outcome)
    else:
        if graded_dir.exists():  # a stopped run may leave half a folder behind
            shutil.rmtree(graded_dir, ignore_errors=True)
        record_zero(course, assignment, student)
        outcome.details.append(f"not graded: 0 for every exercise (nbgrader's log: {_relative(log_path, course.root)})")

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
            ename, evalue = output.get("ename", ""), _one_line(output.get("evalue", ""))
            if ename == "CellTimeoutError":
                outcome.add("timeout", f"{label} ran longer than {timeout} s and was interrupted")
            elif ename == TAMPERED:
                outcome.add("checks tampered with", f"{label}: {_one_line(output.get('evalue', ''), 400)}")
            elif DELEGATION_MARK in evalue:
                outcome.add("delegated to reference_impl", f"{label}: {evalue}")
            elif meta.get("grade") and ename == "NotImplementedError":
                not_attempted.append(label)
            elif meta.get("grade"):
                failing.append(f"{label} ({ename}: {_one_line(evalue, 80)})" if evalue else f"{label} ({ename})")
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
    with Gradebook(course.db_url, course.course_id) as gradebook:
        try:
            submission = gradebook.find_submission(assignment, student)
        except MissingEntry:
            return {}
        return {grade.name: float(grade.score) for notebook in submission.notebooks for grade in notebook.grades}


def record_zero(course: Course, assignment: str, student: str) -> None:
    """Give every graded cell of a submission that nbgrader could not grade an explicit 0
    (as nbgrader does for a missing notebook), replacing any grade of an earlier run."""

    with Gradebook(course.db_url, course.course_id) as gradebook:
        gradebook.update_or_create_student(student)
        try:
            submission = gradebook.find_submission(assignment, student)
        except MissingEntry:
            submission = gradebook.add_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gradebook.db.commit()


def gradebook_score(course: Course, assignment: str, student: str) -> float:

    with Gradebook(course.db_url, course.course_id) as gradebook:
        try:
            return float(gradebook.find_submission(assignment, student).score)
        except MissingEntry:
            return 0.0


# ---------------------------------------------------------------------------------------
# feedback and export
# ---------------------------------------------------------------------------------------


def feedback(
    course: Course,
    assignment: str,
    students: list[str] | None = None,
    report_dir: Path | None = None,
    wait: bool = True,
    echo: bool = True,
) -> list[Path]:
    """Write the feedback pages of what was graded last, replacing any older page; returns them.

    A graded student gets nbgrader's page (``nbgrader generate_feedback --force``, with the
    course's preprocessors: the outcome on top, no hidden checks, one-line errors); a
    student in the outcome report whose notebook could not be graded gets a page that says
    why (nbgrader writes none, and would leave the page of an earlier grading).
    """
    with course_lock(course, wait=wait, echo=echo):
        course.check_assignment(assignment)
        report_dir = Path(report_dir) if report_dir is not None else course.root / "reports"
        report_path = report_dir / f"{assignment}_outcomes.csv"
        report = read_report(report_path) if report_path.exists() else {}
        graded = sorted(path.parent.name for path in course.autograded.glob(f"*/{assignment}") if path.is_dir())
        known = sorted(set(graded) | set(report))
        if students:
            unknown = sorted(set(students) - set(known))
            if unknown:
                raise GradingError(
                    f"{', '.join(unknown)}: not graded for {assignment} (no autograded/<student>/{assignment}/ "
                    f"and no row in {report_path}): run autograde first"
                )
            known = [student for student in known if student in students]
        if not known:
            raise GradingError(f"nothing graded for {assignment} yet: run autograde first")

        names = sorted(path.stem for path in (course.source / assignment).glob("*.ipynb"))
        feedback_root = course.root / "feedback"
        written = []
        for student in known:
            folder = feedback_root / student / assignment
            if student in graded:
                args = ["generate_feedback", assignment, "--force", "--student", student]
                args.append(f"--OutcomeNote.report_dir={report_dir.resolve()}")
                log_path = report_dir / "logs" / assignment / f"{student}.feedback.log"
                status, log = run_nbgrader(course, args, log_path)
                pages = [folder / f"{name}.html" for name in names]
                if status != 0 or not all(page.exists() for page in pages):
                    last_error = next((line for line in reversed(log.splitlines()) if "Error" in line), "see the log")
                    raise GradingError(
                        f"nbgrader generate_feedback {assignment} --student {student} failed "
                        f"(exit status {status}): {last_error.strip()} ({_relative(log_path, course.root)})"
                    )
                log_path.unlink()
            else:
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                pages = [folder / f"{name}.html" for name in names]
                for page in pages:
                    page.write_text(ungraded_page(assignment, page.stem, report[student]), encoding="utf-8")
            written.extend(pages)
            if echo:
                print(f"wrote {', '.join(_relative(page, course.root) for page in pages)}", flush=True)
        return written


def ungraded_page(assignment: str, notebook: str, row: dict[str, str]) -> str:
    """The feedback page of a submission that could not be graded: the outcome, in words."""
    from html import escape

    explanation = student_facing(row["explanation"])
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(notebook)}: feedback</title></head>\n<body>\n"
        f"<h1>{escape(notebook)} ({escape(assignment)})</h1>\n"
        f"<p><strong>Score: {escape(row['score'])} / {escape(row['max_score'])}</strong></p>\n"
        f"<p>Your notebook could not be graded (status <code>{escape(row['status'])}</code>): "
        f"{escape(explanation)}.</p>\n</body></html>\n"
    )


def export(course: Course, to: Path | None = None, report_dir: Path | None = None, wait: bool = True) -> Path:
    """nbgrader's grade export (``nbgrader export``: one row per student and assignment),
    with the outcome of each grading joined on: the columns ``status`` and ``explanation``,
    so that a 0 for a missing notebook or a dead kernel is not taken for a real 0."""
    with course_lock(course, wait=wait, echo=False):
        to = Path(to) if to is not None else course.root / "grades.csv"
        report_dir = Path(report_dir) if report_dir is not None else course.root / "reports"
        with tempfile.TemporaryDirectory(prefix="export-") as scratch:
            raw = Path(scratch) / "grades.csv"
            status, log = run_nbgrader(course, ["export", f"--to={raw}"], Path(scratch) / "export.log")
            if status != 0 or not raw.exists():
                raise GradingError(f"nbgrader export failed (exit status {status}):\n{log}")
            with open(raw, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns, rows = list(reader.fieldnames or []), list(reader)
        reports: dict[str, dict[str, dict[str, str]]] = {}
        for row in rows:
            assignment = row.get("assignment", "")
            if assignment not in reports:
                path = report_dir / f"{assignment}_outcomes.csv"
                reports[assignment] = read_report(path) if path.exists() else {}
            outcome = reports[assignment].get(row.get("student_id", ""))
            if outcome is not None:
                row["status"], row["explanation"] = outcome["status"], outcome["explanation"]
            else:
                row["status"], row["explanation"] = "", "no outcome recorded (not graded with course_tools.grading)"
        to.parent.mkdir(parents=True, exist_ok=True)
        with open(to, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*columns, "status", "explanation"])
            writer.writeheader()
            writer.writerows(rows)
        return to


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

REPORT_COLUMNS = ("student", "score", "max_score", "status", "explanation")


def write_report(outcomes: list[Outcome], path: Path, kept_rows: list[dict[str, str]] = ()) -> Path:
    """One row per student, sorted by student: the outcomes, and rows kept from before."""
    rows = [dict(row) for row in kept_rows]
    rows += [
        dict(zip(REPORT_COLUMNS, (o.student, f"{o.score:g}", f"{o.max_score:g}", o.status, o.explanation)))
        for o in outcomes
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["student"]))
    return path


def read_report(path: Path) -> dict[str, dict[str, str]]:
    """The outcomes of a report, by student."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def format_table(outcomes: list[Outcome], width: int = 100) -> str:
    rows = [("student", "score", "status", "explanation")]
    rows += [(o.student, f"{o.score:g}/{o.max_score:g}", o.status, o.explanation) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
        room = max(20, width - len(head) - 2)
        explanation = row[3] if len(row[3]) <= room else row[3][: room - 3] + "..."
        lines.append(f"{head}  {explanation}".rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _read_notebook(path: Path):

    return nbformat.read(str(path), as_version=4)


def _write_notebook(notebook, path: Path) -> None:

    nbformat.write(notebook, str(path))


def _timed_out_cell(log: str) -> str:
    """`` (`first line of its code`)``: nbclient's error shows the start of the cell."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "preview of the cell contents" in line and i + 2 < len(lines):
            return f" (`{_one_line(lines[i + 2], 60)}`)"
    return ""


def _describe_cell(meta: dict) -> str:
    if meta.get("grade"):
        return "checks cell"
    if meta.get("solution"):
        return "solution cell"
    return "read-only cell"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return text if isinstance(text, str) else "".join(text)
    data = output.get("data", {}).get("text/plain", "")
    return data if isinstance(data, str) else "".join(data)


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def sha256_tree(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``folder``: to prove grading left it as it was."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.grading",
        description="Make the exercise notebooks and grade a class with nbgrader, robustly.",
    )
    parser.add_argument("--course-dir", default=".", help="the course folder, with nbgrader_config.py (default: .)")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when another grading command is running on the course, stop at once instead of waiting for it",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser(
        "generate",
        help="solutions/chNN -> exercises/chNN with nbgrader generate_assignment",
        description="Regenerate the student version of each assignment (default: every chNN under solutions/).",
    )
    gen.add_argument("assignments", nargs="*", metavar="chNN")

    grade = commands.add_parser(
        "autograde",
        help="grade every student in submitted/<student>/chNN/ and report each outcome",
        description=(
            "Grade every submission of an assignment with nbgrader autograde, one student per process, "
            "and write reports/chNN_outcomes.csv: student, score, max_score, status, explanation."
        ),
    )
    grade.add_argument("assignment", metavar="chNN")
    grade.add_argument("--timeout", type=int, default=60, help="seconds a notebook cell may run (default: 60)")
    grade.add_argument(
        "--student-timeout",
        type=float,
        default=None,
        help="seconds the grading of one student may take in all (default: 10 x --timeout, at least 600)",
    )
    _add_student_option(grade, "grade only this student (repeatable)")
    _add_report_dir_option(grade, "where the outcome report goes (default: reports/)")

    back = commands.add_parser(
        "feedback",
        help="write the feedback pages of what was graded last (replacing older pages)",
        description=(
            "Write feedback/<student>/chNN/*.html for every graded student (or the ones named), "
            "replacing the pages of an earlier grading: nbgrader generate_feedback --force, with the "
            "outcome on top and without the hidden checks; a page that says why for a notebook that "
            "could not be graded."
        ),
    )
    back.add_argument("assignment", metavar="chNN")
    _add_student_option(back, "only this student (repeatable)")
    _add_report_dir_option(back, "where the outcome reports are (default: reports/)")

    out = commands.add_parser(
        "export",
        help="nbgrader's grades.csv with each grading's status and explanation joined on",
        description=(
            "Run nbgrader export (one row per student and assignment) and add the columns status and "
            "explanation from reports/chNN_outcomes.csv."
        ),
    )
    out.add_argument("--to", default=None, help="the CSV file to write (default: grades.csv)")
    _add_report_dir_option(out, "where the outcome reports are (default: reports/)")
    return parser


def _add_student_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--student", action="append", dest="students", metavar="ID", help=help_text)


def _add_report_dir_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--report-dir", default=None, help=help_text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        course = Course.at(args.course_dir)
        wait = not args.no_wait
        report_dir = getattr(args, "report_dir", None) and Path(args.report_dir).resolve()
        if args.command == "feedback":
            pages = feedback(course, args.assignment, students=args.students, report_dir=report_dir, wait=wait)
            print(f"{len(pages)} feedback page(s) in {course.root / 'feedback'}")
        elif args.command == "export":
            path = export(course, to=args.to and Path(args.to).resolve(), report_dir=report_dir, wait=wait)
            print(f"wrote {path}")
        elif args.command == "generate":
            for path in generate(course, args.assignments, wait=wait):
                print(f"wrote {path.relative_to(course.root)}")
            stale = sorted(
                path.name
                for path in course.release.glob("ch*")
                if path.is_dir() and path.name not in course.assignments()
            )
            if stale:
                print(f"note: {', '.join(stale)} in {course.release} have no source in {course.source}")
        else:
            if args.timeout < 1:
                raise GradingError(f"--timeout must be at least 1 second, got {args.timeout}")
            autograde(
                course,
                args.assignment,
                timeout=args.timeout,
                student_timeout=args.student_timeout,
                students=args.students,
                report_dir=report_dir,
                wait=wait,
            )
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
