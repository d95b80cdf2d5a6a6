"""The command line: ``python -m course_tools.grading generate|autograde|feedback|export``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from course_tools.grading.autograde import autograde
from course_tools.grading.course import Course, GradingError
from course_tools.grading.export import export
from course_tools.grading.feedback import FeedbackIncomplete, feedback
from course_tools.grading.generate import generate
from course_tools.grading.integrity import IntegrityError

INTEGRITY_EXIT = 3  # the batch stopped because a grading changed what it must not


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
            "Grade every submission of an assignment with nbgrader autograde, one student per process, each "
            "kernel in a sandbox (bubblewrap), several students at once; check after each student that nothing "
            "the grading must not touch has changed; write reports/chNN_outcomes.csv: student, score, max_score, "
            "status, explanation, sandbox."
        ),
    )
    grade.add_argument("assignment", metavar="chNN")
    grade.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"students graded at once, each in its own sandbox (default: the number of cores, {os.cpu_count()})",
    )
    grade.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help=(
            "run the students' kernels without the sandbox, with your rights (for machines without bubblewrap; "
            "the report and the export say so)"
        ),
    )
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
            try:
                pages = feedback(course, args.assignment, students=args.students, report_dir=report_dir, wait=wait)
            except FeedbackIncomplete as error:
                print(f"{len(error.written)} feedback page(s) in {course.root / 'feedback'}")
                raise
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
            if args.jobs is not None and args.jobs < 1:
                raise GradingError(f"--jobs must be at least 1, got {args.jobs}")
            autograde(
                course,
                args.assignment,
                timeout=args.timeout,
                student_timeout=args.student_timeout,
                students=args.students,
                report_dir=report_dir,
                wait=wait,
                jobs=args.jobs,
                sandbox=not args.unsafe_no_sandbox,
            )
    except IntegrityError as error:
        print(f"error: {error}", file=sys.stderr)
        return INTEGRITY_EXIT
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
