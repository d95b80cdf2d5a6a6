#!/usr/bin/env python
"""Grading a class: seconds per student, one at a time and in parallel, and the sandbox's cost.

    .venv/bin/python benchmarks/bench_grading.py                  # ch03, 8 students, ~5 min
    .venv/bin/python benchmarks/bench_grading.py --json out.json --assignment ch05 --students 8
    .venv/bin/python benchmarks/bench_grading.py --small          # 2 students of ch02 (tests)

A temporary course (the assignment's ``solutions/`` and ``nbgrader_config.py``) with a
class of submissions: the solutions, the blank release notebook, and notebooks with half
the exercises solved, in turn. The class is graded by ``course_tools.grading.autograde``,
the instructor's command, in these runs, each from the same starting state:

* ``--jobs 1`` and ``--jobs N`` (N: the cores), in the sandbox: seconds per student
  (wall time of the batch / students) and the speed-up;
* ``--jobs 1`` in the sandbox and with ``--unsafe-no-sandbox``, taking turns ``--rounds``
  times: the ratio of the median times is the sandbox's overhead.

Every run must give every student the same score and status, or the benchmark fails. The
machine's load average before and after is reported: measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_tools.grading import Course, autograde, generate  # noqa: E402


def make_class(root: Path, assignment: str, students: int) -> Course:
    """A course folder with ``students`` submissions of ``assignment``."""
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(
        ROOT / "solutions" / assignment, root / "solutions" / assignment, ignore=shutil.ignore_patterns("_src")
    )
    course = Course.at(root)
    generate(course, [assignment])
    for path in sorted((course.source / assignment).glob("*.ipynb")):
        source = nbformat.read(path, as_version=4)
        release = nbformat.read(course.release / assignment / path.name, as_version=4)
        for k in range(students):
            notebook = [source, release, half_solved(release, source, 0), half_solved(release, source, 1)][k % 4]
            folder = course.submitted / f"student{k:03d}" / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, folder / path.name)
    return course


def half_solved(release, source, parity: int):
    """The release notebook with every other solution cell taken from the source."""
    notebook = copy.deepcopy(release)
    by_id = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in source.cells}
    solutions = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    for i, cell in enumerate(solutions):
        if i % 2 == parity:
            lines = by_id[cell.metadata.nbgrader.grade_id].source.splitlines()
            cell.source = "\n".join(
                line for line in lines if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
            )
    return notebook


def timed_batch(course: Course, assignment: str, jobs: int, sandbox: bool) -> tuple[float, dict]:
    """Grade the whole class once, from scratch; returns (seconds, {student: (score, status)})."""
    for folder in (course.autograded, course.root / "feedback", course.root / "reports"):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    outcomes = autograde(course, assignment, jobs=jobs, sandbox=sandbox, echo=False)
    seconds = time.perf_counter() - started
    return seconds, {o.student: (o.score, o.status) for o in outcomes}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="ch03")
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="N for the parallel run (default: cores)")
    parser.add_argument("--rounds", type=int, default=2, help="sandboxed/unsandboxed pairs for the overhead")
    parser.add_argument("--small", action="store_true", help="2 students of ch02, 1 round (for the tests)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.small:
        args.assignment, args.students, args.rounds = "ch02", 2, 1
    if args.students < 1 or args.jobs < 1 or args.rounds < 1:
        parser.error("--students, --jobs and --rounds must be at least 1")
    if not (ROOT / "solutions" / args.assignment).is_dir():
        parser.error(f"no solutions/{args.assignment}")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        course = make_class(Path(scratch), args.assignment, args.students)
        runs, results = [], {}

        def run(label: str, jobs: int, sandbox: bool) -> float:
            seconds, outcome = timed_batch(course, args.assignment, jobs, sandbox)
            results[label] = outcome
            runs.append({"run": label, "jobs": jobs, "sandbox": sandbox, "seconds": round(seconds, 3)})
            print(f"{label:<24} jobs={jobs:<3} sandbox={'yes' if sandbox else 'no ':<3}  {seconds:7.1f} s", flush=True)
            return seconds

        jobs1 = run("jobs1", 1, True)
        jobsn = run(f"jobs{args.jobs}", args.jobs, True)
        sandboxed, unsandboxed = [jobs1], []
        for r in range(args.rounds):  # taking turns: sandboxed, unsandboxed, sandboxed, ...
            unsandboxed.append(run(f"unsafe-{r + 1}", 1, False))
            sandboxed.append(run(f"jobs1-{r + 2}", 1, True))

    reference = results["jobs1"]
    different = {label: outcome for label, outcome in results.items() if outcome != reference}
    if different:
        print(f"FAILED: the runs disagree on the grades: {reference} vs {different}")
        return 1
    students = args.students
    report = {
        "assignment": args.assignment,
        "students": students,
        "jobs": args.jobs,
        "cpu_count": os.cpu_count(),
        "machine": cpu_model(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds_per_student_jobs1": round(statistics.median(sandboxed) / students, 3),
        "seconds_per_student_jobsN": round(jobsn / students, 3),
        "students_per_minute_jobs1": round(60 * students / statistics.median(sandboxed), 2),
        "students_per_minute_jobsN": round(60 * students / jobsn, 2),
        "parallel_speedup": round(jobs1 / jobsn, 3),
        "parallel_speedup_goal": round(0.8 * min(args.jobs, students), 3),
        "sandbox_overhead_ratio": round(statistics.median(sandboxed) / statistics.median(unsandboxed), 3),
        "sandbox_overhead_goal": 1.05,
        "runs": runs,
        "grades": {student: list(value) for student, value in reference.items()},
    }
    print()
    for key in (
        "seconds_per_student_jobs1",
        "seconds_per_student_jobsN",
        "parallel_speedup",
        "parallel_speedup_goal",
        "sandbox_overhead_ratio",
        "load_average_before",
        "load_average_after",
    ):
        print(f"{key:<28} {report[key]}")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):  # (after: the benchmark's own load)
        print("note: the machine was busy before the runs; these numbers are not those of an idle machine")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
