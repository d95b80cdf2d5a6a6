"""The instructor's commands: make the exercise notebooks, and grade a class safely.

    python -m course_tools.grading generate [chNN ...]
    python -m course_tools.grading autograde chNN [--jobs N] [--timeout 60] [--student ID ...]
    python -m course_tools.grading feedback chNN [--student ID ...]
    python -m course_tools.grading export [--to grades.csv]

Run them in the course folder (the one with ``nbgrader_config.py``) or pass ``--course-dir``.
One module per concern:

* ``course``: the course folder as nbgrader configures it, the course's lock;
* ``runner``: nbgrader's command line in processes of its own, the gradebook one user at a time;
* ``generate``: ``nbgrader generate_assignment`` for each assignment (``exercises/``);
* ``sandbox``: the bubblewrap sandbox every student's kernel runs in;
* ``autograde``: the batch, several students at once, and what each grading found;
* ``integrity``: what grading must leave as it was, checked after each student;
* ``report``: the outcomes (``reports/chNN_outcomes.csv``, the printed table);
* ``feedback`` and ``export``: the pages and the grades, only where they agree with the grading;
* ``cli``: the command line.
"""

from course_tools.grading.autograde import (
    DELEGATION_MARK,
    Released,
    Settings,
    autograde,
    explain_lost_points,
    grade_student,
    gradebook_scores,
    inspect_graded_notebook,
    inspect_submission,
    record_zero,
    remove_duplicated_cells,
    restore_deleted_cells,
    sync_gradebook,
)
from course_tools.grading.cli import build_parser, main
from course_tools.grading.course import Course, CourseBusy, GradingError, course_lock, find_assignments
from course_tools.grading.export import ExportDisputed, export
from course_tools.grading.feedback import FeedbackIncomplete, feedback, ungraded_page
from course_tools.grading.generate import generate
from course_tools.grading.integrity import IntegrityError, sha256_tree
from course_tools.grading.report import REPORT_COLUMNS, STATUSES, Outcome, format_table, read_report, write_report
from course_tools.grading.runner import run_nbgrader
from course_tools.grading.sandbox import SandboxUnavailable

__all__ = [
    "DELEGATION_MARK",
    "REPORT_COLUMNS",
    "STATUSES",
    "Course",
    "CourseBusy",
    "ExportDisputed",
    "FeedbackIncomplete",
    "GradingError",
    "IntegrityError",
    "Outcome",
    "Released",
    "SandboxUnavailable",
    "Settings",
    "autograde",
    "build_parser",
    "course_lock",
    "explain_lost_points",
    "export",
    "feedback",
    "find_assignments",
    "format_table",
    "generate",
    "grade_student",
    "gradebook_scores",
    "inspect_graded_notebook",
    "inspect_submission",
    "main",
    "read_report",
    "record_zero",
    "remove_duplicated_cells",
    "restore_deleted_cells",
    "run_nbgrader",
    "sha256_tree",
    "sync_gradebook",
    "ungraded_page",
    "write_report",
]
