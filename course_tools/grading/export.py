"""``export``: nbgrader's grade export, with the outcome of each grading joined on, and
no score that the gradebook and the grading's own record disagree on."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from course_tools.grading.course import Course, GradingError, course_lock
from course_tools.grading.report import read_report
from course_tools.grading.runner import run_nbgrader

DISPUTED = "disputed"


class ExportDisputed(GradingError):
    """The export was written, without the scores of the rows listed."""


def export(course: Course, to: Path | None = None, report_dir: Path | None = None, wait: bool = True) -> Path:
    """nbgrader's grade export (``nbgrader export``: one row per student and assignment),
    with the outcome of each grading joined on: the columns ``status``, ``explanation`` and
    ``sandbox``, so that a 0 for a missing notebook or a dead kernel is not taken for a real 0.

    A row whose gradebook score differs from the score its grading recorded is written
    without a score (status ``disputed``), and ``ExportDisputed`` names those rows once the
    file is written."""
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
        disputed = []
        for row in rows:
            assignment, student = row.get("assignment", ""), row.get("student_id", "")
            if assignment not in reports:
                path = report_dir / f"{assignment}_outcomes.csv"
                reports[assignment] = read_report(path) if path.exists() else {}
            outcome = reports[assignment].get(student)
            if outcome is None:
                submitted = (course.submitted / student / assignment).is_dir()
                row["status"] = "" if submitted else "no submission"
                row["explanation"] = (
                    "no outcome recorded (not graded with course_tools.grading)"
                    if submitted
                    else f"nothing in submitted/{student}/{assignment}/"
                )
                row["sandbox"] = ""
                continue
            row["status"], row["explanation"] = outcome["status"], outcome["explanation"]
            row["sandbox"] = outcome.get("sandbox", "")
            if abs(float(row.get("raw_score") or 0) - float(outcome["score"])) > 1e-9:
                disputed.append(
                    f"{student}, {assignment}: the gradebook gives {float(row.get('raw_score') or 0):g}, "
                    f"the grading recorded {outcome['score']}"
                )
                row["status"] = DISPUTED
                row["explanation"] = (
                    f"the gradebook ({row.get('raw_score')}) disagrees with the grading's record "
                    f"({outcome['score']}): grade again"
                )
                for column in ("raw_score", "score", "late_submission_penalty"):
                    if column in row:
                        row[column] = ""
        to.parent.mkdir(parents=True, exist_ok=True)
        with open(to, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*columns, "status", "explanation", "sandbox"])
            writer.writeheader()
            writer.writerows(rows)
        if disputed:
            raise ExportDisputed(
                f"wrote {to} without the scores of {len(disputed)} row(s) whose gradebook score is not the one "
                "their grading recorded (status disputed):\n  " + "\n  ".join(disputed)
            )
        return to
