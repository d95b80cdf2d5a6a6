"""``generate``: the student version of each assignment, made by nbgrader."""

from __future__ import annotations

import tempfile
from pathlib import Path

from course_tools.grading.course import Course, GradingError, course_lock
from course_tools.grading.runner import run_nbgrader


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
