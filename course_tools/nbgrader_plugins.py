"""nbgrader preprocessors of the course, named in ``nbgrader_config.py``.

Autograding (``c.Autograde.autograde_preprocessors``):

* ``GuardedExecute``: nbgrader's ``Execute``, with the checks guarded against a notebook
  that rebinds or patches what they use (see ``course_tools.grading_guard``): such a
  checks cell gets an error ``ChecksTampered`` that says what was changed, so nbgrader
  gives it 0; and what a checks cell writes to stderr (a progress bar, a log line, a
  warning of the learner's code) is kept as ordinary output, since nbgrader would give 0
  for it.

Feedback (``c.GenerateFeedback.preprocessors``):

* ``HideHiddenChecks``: the hidden checks' source is removed from the page;
* ``OneLineErrors``: an error in a checks cell shows as one line, ``CheckFailed: message``
  (a traceback would show lines of the hidden checks and frames of ``course_tools``);
* ``OutcomeNote``: a first cell with the grader's outcome for the student (the row of
  ``reports/chNN_outcomes.csv``), so a page says why an exercise got 0.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Bool, Unicode

from course_tools.grading_guard import MARK

TAMPERED = "ChecksTampered"  # the error a guarded checks cell gets
GUARD = "__import__('course_tools.grading_guard', fromlist=['report'])"


class GuardedExecute(Execute):
    """nbgrader's ``Execute``, with the checks guarded and stderr kept out of the grades."""

    # One output per stream and cell, as a learner sees it (a tqdm bar as its last state):
    # nbgrader's LimitOutput then keeps exactly its number of lines, however the kernel
    # happened to cut the stream into messages.
    coalesce_streams = Bool(True, help="merge the stream outputs of a cell, one per stream").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        if getattr(self, "_guarded_client", None) is not self.kc:  # a new kernel: snapshot first
            self._run_hidden(f"{GUARD}.install()", index)
            self._guarded_client = self.kc

        if utils.is_grade(cell):
            names = used_names(cell.source)
            found = self._checkpoint(names, index, during=False)
            cell, resources = super().preprocess_cell(cell, resources, index)
            found += [finding for finding in self._checkpoint(names, index, during=True) if finding not in found]
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"  # nbgrader would give 0 for any stderr output
            if found:
                cell.outputs.append(tampered_error(found))
        else:
            cell, resources = super().preprocess_cell(cell, resources, index)
            if utils.is_locked(cell) and not utils.is_solution(cell):  # the setup: remember its names
                self._run_hidden(f"{GUARD}.record(globals(), {bound_names(cell.source)!r})", index)
        return cell, resources

    def _checkpoint(self, names: list[str], index: int, during: bool) -> list[str]:
        outputs = self._run_hidden(f"{GUARD}.report(globals(), {names!r}, during={during})", index)
        for output in outputs:
            if output.get("output_type") == "error":
                return [f"broke the grader's guard ({output.get('ename')}: {output.get('evalue')})"]
            if output.get("output_type") == "stream":
                for line in output.get("text", "").splitlines():
                    if line.startswith(MARK):
                        return list(json.loads(line[len(MARK) :]))
        return ["hid the grader's guard (it gave no answer)"]

    def _run_hidden(self, code: str, index: int) -> list:
        """Run ``code`` in the kernel, outside the notebook: no history, no cell, its outputs returned."""
        hidden = nbformat.v4.new_code_cell(code)
        cell = self.nb.cells[index]
        try:
            self.execute_cell(hidden, index, store_history=False)
        finally:
            self.nb.cells[index] = cell  # nbclient puts the cell it ran in the notebook
        return hidden.get("outputs", [])


def tampered_error(found: list[str]) -> NotebookNode:
    message = (
        f"the checks were tampered with: your code {'; '.join(found)}: "
        "the checks ran with the originals put back, and this exercise gets 0"
    )
    return NotebookNode(output_type="error", ename=TAMPERED, evalue=message, traceback=[f"{TAMPERED}: {message}"])


def used_names(source: str) -> list[str]:
    """The names a cell's code reads and does not assign itself: what it takes from the notebook."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return sorted(set(re.findall(r"[A-Za-z_]\w*", source)))
    names = [node for node in ast.walk(tree) if isinstance(node, ast.Name)]
    assigned = {node.id for node in names if not isinstance(node.ctx, ast.Load)}
    assigned |= {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    return sorted({node.id for node in names if isinstance(node.ctx, ast.Load)} - assigned)


def bound_names(source: str) -> list[str]:
    """The names a cell's top-level code binds: imports, definitions, assignments."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = set()
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in statement.names)
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        else:
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    names.discard("*")
    return sorted(names)


# ---------------------------------------------------------------------------------------
# Feedback
# ---------------------------------------------------------------------------------------


class HideHiddenChecks(ClearHiddenTests):
    """The hidden checks' source is removed from the feedback (their score and message stay)."""

    enforce_metadata = Bool(False).tag(config=True)


class OneLineErrors(NbGraderPreprocessor):
    """An error of a checks cell shows as ``Name: message``, without a traceback."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    line = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    output["traceback"] = [line]
        return cell, resources


class OutcomeNote(NbGraderPreprocessor):
    """A first cell with the grader's outcome for this student (``<report_dir>/chNN_outcomes.csv``)."""

    report_dir = Unicode("reports", help="the folder of the outcome reports, relative to the course folder").tag(
        config=True
    )

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        path = Path(self.report_dir) / f"{info.get('assignment')}_outcomes.csv"
        if not path.is_file():
            return nb, resources
        with open(path, newline="", encoding="utf-8") as f:
            row = next((row for row in csv.DictReader(f) if row.get("student") == info.get("student")), None)
        if row is None:
            return nb, resources
        text = (
            f"**Grading outcome**: {row['score']} of {row['max_score']} points; "
            f"status `{row['status']}`: {_markdown_escape(student_facing(row['explanation']))}."
        )
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))
        return nb, resources


def student_facing(explanation: str) -> str:
    """An outcome's explanation without what only the instructor has (the paths of logs)."""
    return re.sub(r" \(nbgrader's log: [^)]*\)", "", explanation)


def _markdown_escape(text: str) -> str:
    return re.sub(r"([\\`*_<>\[\]#|])", r"\\\1", text)
