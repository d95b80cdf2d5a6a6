"""nbgrader's command line in processes of its own, and the gradebook shared between them.

A batch runs several ``nbgrader autograde`` processes at once (``autograde --jobs N``):
each runs its student's kernel for most of its time and uses the gradebook (SQLite) for a
few moments. Those moments are serialized by one lock file per course,
``.gradebook.lock``: nbgrader's ``Gradebook`` takes it when opened and gives it back when
closed, in these processes and in the grader's own (``gradebook``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import psutil
from filelock import FileLock
from nbgrader.api import Gradebook
from nbgrader.apps.nbgraderapp import NbGraderApp

from course_tools.grading.course import Course


def run_nbgrader(
    course: Course, args: list[str], log_path: Path, time_limit: float | None = None, env: dict | None = None
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
    env = dict(os.environ if env is None else env)
    # nbgrader runs the `alembic` command by name: find the one of this Python environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    process = _nbgrader_context().Process(
        target=_nbgrader_main, args=(list(args), str(course.root), env, str(log_path), str(gradebook_lock_path(course)))
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


def _nbgrader_main(args: list[str], cwd: str, env: dict[str, str], log_path: str, lock_path: str) -> None:
    """The body of an nbgrader process: ``nbgrader <args>`` with its output in ``log_path``,
    every use of the gradebook it makes serialized with the other processes of the batch."""
    _serialize_gradebook(lock_path)
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
# The gradebook, one user at a time
# ---------------------------------------------------------------------------------------


def gradebook_lock_path(course: Course) -> Path:
    return course.root / ".gradebook.lock"


@contextmanager
def gradebook(course: Course):
    """nbgrader's ``Gradebook`` of the course, held alone (see the module's docstring)."""
    with FileLock(gradebook_lock_path(course)), Gradebook(course.db_url, course.course_id) as book:
        yield book


def _serialize_gradebook(lock_path: str) -> None:
    """In an nbgrader process: every ``Gradebook`` holds the course's gradebook lock from
    its opening to its closing."""
    lock = FileLock(lock_path, thread_local=False)  # re-entrant: nbgrader may nest them
    opened, closed = Gradebook.__init__, Gradebook.close

    def locked_init(self, *args, **kwargs):
        lock.acquire()
        self._course_lock_held = True
        try:
            opened(self, *args, **kwargs)
        except BaseException:
            self._course_lock_held = False
            lock.release()
            raise

    def unlocking_close(self):
        try:
            closed(self)
        finally:
            if getattr(self, "_course_lock_held", False):
                self._course_lock_held = False
                lock.release()

    Gradebook.__init__, Gradebook.close = locked_init, unlocking_close
