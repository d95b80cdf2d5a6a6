"""Authoring: every notebook has its text source and agrees with it, and every exercise notebook
has the structure that grading relies on, however it was edited (text source, JupyterLab, nbgrader).

Fixing one typo in a text source and syncing must change exactly that cell of the notebook:
no other cell's source, id or outputs.
"""

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools import notebooks

ROOT = Path(__file__).resolve().parent.parent
PAIRS = notebooks.all_pairs()
SOLUTIONS = sorted((ROOT / "solutions").glob("ch*/ch*_exercises.ipynb"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- pairing --------------------------------------------------------------------------------


def test_every_book_chapter_and_exercise_notebook_is_paired():
    paired = {relative(pair.notebook) for pair in PAIRS}
    chapters = {relative(path) for path in (ROOT / "book").glob("*.ipynb")}
    assert chapters and chapters <= paired
    assert {relative(path) for path in SOLUTIONS} <= paired
    texts = {relative(pair.text) for pair in PAIRS}
    assert "book/_src/ch03_attention.md" in texts
    assert "solutions/ch03/_src/ch03_exercises.py" in texts


@pytest.mark.parametrize("pair", PAIRS, ids=lambda pair: relative(pair.notebook))
def test_text_source_and_notebook_agree(pair):
    problems = notebooks.problems(pair)
    assert not problems, "\n".join(problems)


def test_a_disagreement_is_reported_with_the_file_the_cell_and_the_fix(tmp_path):
    book = copy_chapter(tmp_path, "ch03_attention")
    text = book / "_src" / "ch03_attention.md"
    text.write_text(text.read_text(encoding="utf-8").replace("knows about its own token", "knows its own token", 1))
    pair = notebooks.pair_of(text)
    [problem] = notebooks.problems(pair)
    assert "ch03_attention.md and " in problem and "ch03_attention.ipynb disagree" in problem
    assert "cell 1: its source differs" in problem
    assert "make sync" in problem


def test_a_text_source_without_its_notebook_is_reported(tmp_path):
    book = copy_chapter(tmp_path, "ch03_attention")
    (book / "ch03_attention.ipynb").unlink()
    [problem] = notebooks.problems(notebooks.pair_of(book / "_src" / "ch03_attention.md"))
    assert "has no notebook" in problem and "make sync" in problem


def copy_chapter(tmp_path: Path, name: str) -> Path:
    """A book folder in tmp_path holding one chapter, its text source and the pairing config."""
    book = tmp_path / "book"
    (book / "_src").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "jupytext.toml", book)
    shutil.copy(ROOT / "book" / f"{name}.ipynb", book)
    shutil.copy(ROOT / "book" / "_src" / f"{name}.md", book / "_src")
    return book


def test_a_typo_fixed_in_the_text_changes_exactly_one_cell_of_the_notebook(tmp_path):
    book = copy_chapter(tmp_path, "ch03_attention")
    notebook, text = book / "ch03_attention.ipynb", book / "_src" / "ch03_attention.md"
    before = nbformat.read(notebook, as_version=4)
    source = text.read_text(encoding="utf-8")
    assert source.count("knows about its own token and position") == 1
    text.write_text(source.replace("its own token and position", "its own token and its position"), encoding="utf-8")
    notebooks.sync([text])
    after = nbformat.read(notebook, as_version=4)

    assert len(after.cells) == len(before.cells)
    assert after.metadata == before.metadata
    changed = [i for i, (a, b) in enumerate(zip(before.cells, after.cells)) if a != b]
    assert changed == [0]  # the title and introduction of the chapter
    assert after.cells[0].source == before.cells[0].source.replace("token and position", "token and its position")
    assert after.cells[0].id == before.cells[0].id
    assert notebooks.problems(notebooks.pair_of(notebook)) == []


# --- the structure of every exercise notebook ------------------------------------------------

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
TASK_HEADING = re.compile(r"^## Exercise (\d+) \((\d+) points?\): (.+)$", re.MULTILINE)
POINTS_ROW = re.compile(r"^\| (\d+)\. (.+) \| (\d+) \|$", re.MULTILINE)


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def exercises_of(nb) -> list[tuple]:
    """(task, solution, checks) cells of each exercise, in order, as the layout puts them."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and TASK_HEADING.search(cell.source):
            found.append(tuple(nb.cells[index : index + 3]))
    return found


@pytest.fixture(params=SOLUTIONS, ids=relative)
def solution_notebook(request):
    return nbformat.read(request.param, as_version=4)


def test_intro_setup_exercises_and_outro_in_that_order(solution_notebook):
    cells = solution_notebook.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# Chapter ")
    assert nbgrader(cells[1]).get("grade_id") == "setup" and nbgrader(cells[1]).get("locked") is True
    assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("## Before you submit")
    exercises = exercises_of(solution_notebook)
    assert len(cells) == 3 + 3 * len(exercises), "each exercise is three cells: task, solution, checks"
    numbers = [int(TASK_HEADING.search(task.source).group(1)) for task, _, _ in exercises]
    assert numbers == list(range(1, len(exercises) + 1))


def test_every_solution_cell_has_a_solution_region(solution_notebook):
    for number, (_, solution, _) in enumerate(exercises_of(solution_notebook), 1):
        meta = nbgrader(solution)
        assert meta.get("solution") is True and meta.get("grade") is False, f"exercise {number}: not a solution cell"
        assert meta.get("grade_id", "").startswith(f"ex{number}_") and meta["grade_id"].endswith("_solution")
        source = solution.source
        assert BEGIN_SOLUTION in source and END_SOLUTION in source, f"exercise {number}: no {BEGIN_SOLUTION} region"
        assert source.index(BEGIN_SOLUTION) < source.index(END_SOLUTION)


def test_every_checks_cell_is_locked_graded_watched_and_has_hidden_checks(solution_notebook):
    for number, (task, solution, checks) in enumerate(exercises_of(solution_notebook), 1):
        meta = nbgrader(checks)
        points = int(TASK_HEADING.search(task.source).group(2))
        assert meta.get("grade") is True and meta.get("locked") is True, f"exercise {number}: checks not graded+locked"
        assert meta.get("points") == points, f"exercise {number}: the heading says {points} points, the cell {meta}"
        assert checks.metadata.get("editable") is False and checks.metadata.get("deletable") is False
        assert meta.get("grade_id") == nbgrader(solution)["grade_id"].replace("_solution", "_tests")
        source = checks.source
        assert "forbid_reference_impl(" in source, f"exercise {number}: the learner's code runs unwatched"
        visible, _, rest = source.partition(BEGIN_HIDDEN)
        hidden, _, after = rest.partition(END_HIDDEN)
        assert "forbid_reference_impl(" in visible, f"exercise {number}: the visible checks run nothing watched"
        assert hidden.strip() and not after.strip(), f"exercise {number}: hidden checks missing or not last"


def test_points_table_lists_every_exercise_with_its_points(solution_notebook):
    table = [(int(n), title, int(points)) for n, title, points in POINTS_ROW.findall(solution_notebook.cells[0].source)]
    headings = []
    for task, _, _ in exercises_of(solution_notebook):
        number, points, title = TASK_HEADING.search(task.source).groups()
        headings.append((int(number), title[0].upper() + title[1:].replace("|", "\\|"), int(points)))
    assert table == headings


def test_grade_ids_are_unique(solution_notebook):
    ids = [nbgrader(cell)["grade_id"] for cell in solution_notebook.cells if "grade_id" in nbgrader(cell)]
    assert len(ids) == len(set(ids))


def how_they_work(nb) -> str:
    intro = nb.cells[0].source
    start = intro.index("How they work:")
    return intro[start : intro.index("\n\n", start + len("How they work:\n\n"))]


def test_every_set_explains_the_rules_in_the_same_words():
    texts = {relative(path): how_they_work(nbformat.read(path, as_version=4)) for path in SOLUTIONS}
    first = next(iter(texts.values()))
    different = [path for path, text in texts.items() if text != first]
    assert not different, f"the 'How they work' rules differ from {relative(SOLUTIONS[0])} in: {different}"


def test_a_progress_bar_widget_is_stored_as_the_text_of_its_final_state():
    widgets = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
        "l": {"model_name": "HTMLModel", "state": {"value": "Ep 1/1: 100%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"value": 116, "max": 116}},
        "r": {"model_name": "HTMLModel", "state": {"value": " 116/116 [00:24&lt;00:00, loss=2.565]"}},
    }
    view = {"model_id": "bar", "version_major": 2, "version_minor": 0}
    output = nbformat.v4.new_output("display_data", data={notebooks.WIDGET_VIEW: view, "text/plain": "  0%|  | 0/116"})
    stored = notebooks.progress_bar_as_text(output, widgets)
    assert stored.data == {"text/plain": "Ep 1/1: 100%|██████████| 116/116 [00:24<00:00, loss=2.565]"}
    other = nbformat.v4.new_output("display_data", data={"text/plain": "a plot"})
    assert notebooks.progress_bar_as_text(other, widgets) is other
