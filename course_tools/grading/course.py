"""The course folder as nbgrader configures it, the course's lock, and small helpers."""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

ASSIGNMENT_NAME = re.compile(r"ch\d\d")


# A student id becomes part of nbgrader's path patterns (globs): keep to safe characters.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


class GradingError(RuntimeError):
    """The command cannot run (no such assignment, not a course folder...)."""


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


def read_notebook(path: Path):
    return nbformat.read(str(path), as_version=4)


def write_notebook(notebook, path: Path) -> None:
    nbformat.write(notebook, str(path))


def relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def one_line(text: str, width: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."
