"""``feedback``: the feedback pages of what was graded last, and only of what is proven.

A page is written only when the grading it shows is intact: the gradebook's score is the
one the grading recorded (``reports/chNN_outcomes.csv``) and the graded notebook is the
one the grading wrote (its SHA-256 in ``reports/chNN_graded.json``). A student whose page
cannot be written is listed at the end; the others get theirs.
"""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path

from course_tools.grading import integrity
from course_tools.grading.autograde import gradebook_scores
from course_tools.grading.course import Course, GradingError, course_lock, relative
from course_tools.grading.report import read_report
from course_tools.grading.runner import run_nbgrader
from course_tools.nbgrader_plugins import student_facing


class FeedbackIncomplete(GradingError):
    """Some pages could not be written; ``written`` lists those that were."""

    def __init__(self, message: str, written: list[Path]):
        super().__init__(message)
        self.written = written


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
    course's preprocessors: the outcome on top, no hidden checks, one-line errors, nothing
    active from the notebook); a student in the outcome report whose notebook could not be
    graded gets a page that says why (nbgrader writes none, and would leave the page of an
    earlier grading). Raises ``FeedbackIncomplete`` at the end when a page was refused
    (grades that disagree, a graded notebook changed since) or nbgrader failed on it.
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
        scores = gradebook_scores(course, assignment)
        manifest = integrity.read_graded_manifest(report_dir, assignment)
        written, failures = [], []
        for student in known:
            folder = course.root / "feedback" / student / assignment
            try:
                refusal = _disagreement(course, assignment, student, report.get(student), scores, manifest)
                if refusal:
                    if folder.exists():  # an older page would show the disputed grade
                        shutil.rmtree(folder)
                    raise GradingError(f"no page: {refusal}")
                if student in graded:
                    pages = _nbgrader_pages(course, assignment, student, names, folder, report_dir)
                else:
                    pages = _ungraded_pages(assignment, names, folder, report[student])
            except GradingError as error:
                failures.append(f"{student}: {error}")
                if echo:
                    print(f"{student}: {error}", flush=True)
                continue
            written.extend(pages)
            if echo:
                print(f"wrote {', '.join(relative(page, course.root) for page in pages)}", flush=True)
        if failures:
            raise FeedbackIncomplete(
                f"{len(failures)} of {len(known)} student(s) got no feedback page:\n  " + "\n  ".join(failures),
                written,
            )
        return written


def _disagreement(course, assignment, student, row, scores, manifest) -> str:
    """Why the grading of ``student`` cannot be shown as it is, or ''."""
    if row is None:
        return ""  # graded by nbgrader alone: nothing recorded to compare with
    recorded = float(row["score"])
    now = scores.get(student)
    if now is not None and abs(now - recorded) > 1e-9:
        return (
            f"the gradebook gives {now:g}, the grading recorded {recorded:g} (reports/{assignment}_outcomes.csv): "
            "something changed the gradebook after the grading; grade this student again"
        )
    if student in manifest:
        folder = integrity.graded_folder(course, assignment, student)
        changes = integrity.differences({"/": manifest[student]}, {"/": integrity.sha256_tree(folder)})
        if changes:
            changed = ", ".join(change.split("/", 1)[1] for change in changes[:5])
            return f"autograded/{student}/{assignment}/ is not what the grading wrote ({changed}); grade again"
    return ""


def _nbgrader_pages(course, assignment, student, names, folder, report_dir) -> list[Path]:
    args = ["generate_feedback", assignment, "--force", "--student", student]
    args.append(f"--OutcomeNote.report_dir={report_dir.resolve()}")
    log_path = report_dir / "logs" / assignment / f"{student}.feedback.log"
    status, log = run_nbgrader(course, args, log_path)
    pages = [folder / f"{name}.html" for name in names]
    if status != 0 or not all(page.exists() for page in pages):
        last_error = next((line for line in reversed(log.splitlines()) if "Error" in line), "see the log")
        raise GradingError(
            f"nbgrader generate_feedback failed (exit status {status}): {last_error.strip()} "
            f"({relative(log_path, course.root)})"
        )
    log_path.unlink()
    return pages


def _ungraded_pages(assignment, names, folder, row) -> list[Path]:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pages = [folder / f"{name}.html" for name in names]
    for page in pages:
        page.write_text(ungraded_page(assignment, page.stem, row), encoding="utf-8")
    return pages


def ungraded_page(assignment: str, notebook: str, row: dict[str, str]) -> str:
    """The feedback page of a submission that could not be graded: the outcome, in words."""
    explanation = student_facing(row["explanation"])
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(notebook)}: feedback</title></head>\n<body>\n"
        f"<h1>{escape(notebook)} ({escape(assignment)})</h1>\n"
        f"<p><strong>Score: {escape(row['score'])} / {escape(row['max_score'])}</strong></p>\n"
        f"<p>Your notebook could not be graded (status <code>{escape(row['status'])}</code>): "
        f"{escape(explanation)}.</p>\n</body></html>\n"
    )
