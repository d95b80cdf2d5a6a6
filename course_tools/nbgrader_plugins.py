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
  ``reports/chNN_outcomes.csv``), so a page says why an exercise got 0;
* ``SafeFeedback``: nothing the student put in the notebook (an HTML or JavaScript output, HTML
  in markdown, metadata) can run or load anything on the page: text and real images only.
"""

from __future__ import annotations

import ast
import base64
import csv
import html
import json
import re
from pathlib import Path

import bleach
import nbformat
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
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

    def __init__(self, *args, **kwargs):
        # The student's kernel runs in the sandbox (course_tools.grading.sandbox); nbgrader's
        # Execute would otherwise pick an unsandboxed AsyncKernelManager.
        from course_tools.grading.sandbox import SandboxedKernelManager

        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

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
    """The hidden checks' source is removed from the feedback (their score and message stay).

    Only the checks cells are touched: the locked grade cells of code, which nbgrader's autograde
    put back from the gradebook. A cell the student wrote is shown as written, whatever its text
    (nbgrader's ``ClearHiddenTests`` would cut it, or fail the page on an unclosed marker).
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell) and utils.is_locked(cell):
            cell.source = without_hidden_regions(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
        return cell, resources


def without_hidden_regions(source: str, begin: str, end: str) -> str:
    """``source`` without its lines from each ``begin`` line to the next ``end`` line, both included.

    A region that is not closed runs to the end: it is hidden, never an error.
    """
    kept, hidden = [], False
    for line in source.split("\n"):
        if begin in line:
            hidden = True
        elif end in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


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
        # Every field as text: the explanation may quote a student's exception message.
        status = row["status"].replace("`", "'")  # a backtick would end the code span
        text = (
            f"**Grading outcome**: {_markdown_escape(row['score'])} of {_markdown_escape(row['max_score'])} points; "
            f"status `{status}`: {_markdown_escape(student_facing(row['explanation']))}."
        )
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))
        return nb, resources


def student_facing(explanation: str) -> str:
    """An outcome's explanation without what only the instructor has (the paths of logs)."""
    return re.sub(r" \(nbgrader's log: [^)]*\)", "", explanation)


def _markdown_escape(text: str) -> str:
    return re.sub(r"([\\`*_<>\[\]#|])", r"\\\1", text)


class SafeFeedback(NbGraderPreprocessor):
    """Nothing on the page can run, load or read anything: the student wrote the notebook.

    Listed last before the exporter (``nbgrader_config.py``), it leaves:

    * outputs: text, and PNG and JPEG images that are what they say; any other output (HTML,
      JavaScript, SVG, markdown, LaTeX, widgets) shows its ``text/plain``, or a note;
    * markdown (and raw) cells: HTML made here from an allow-list of tags, attributes and URLs
      (nbgrader's feedback template renders markdown without nbconvert's ``sanitize_html``);
    * metadata: only the nbgrader fields the template shows, made safe (it prints them unescaped);
      no notebook metadata but the language (``widgets`` would load the widget scripts).
    """

    def preprocess(self, nb, resources):
        name = nb.metadata.get("language_info", {}).get("name")  # for the highlighting of code
        nb.metadata = nbformat.from_dict({"language_info": {"name": name}} if isinstance(name, str) else {})
        info = resources.get("nbgrader", {})
        if "notebook" in info:  # the page's title and heading
            info["notebook"] = html.escape(str(info["notebook"]))
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        cell.metadata = safe_cell_metadata(cell.metadata)
        if cell.cell_type == "code":
            cell.outputs = [safe for safe in map(safe_output, cell.get("outputs", [])) if safe is not None]
        else:
            source = cell.source if cell.cell_type == "markdown" else f"<pre>{html.escape(cell.source)}</pre>"
            cell.source = safe_markdown(source, cell.pop("attachments", None))
            cell.cell_type = "markdown"
        return cell, resources


IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def safe_images(bundle: dict) -> dict:
    """The PNG and JPEG images of a MIME bundle whose data is one (base64, without line breaks)."""
    images = {}
    for mime, magic in IMAGE_MAGIC.items():
        data = bundle.get(mime)
        if isinstance(data, str):
            data = "".join(data.split())
            try:
                if base64.b64decode(data, validate=True).startswith(magic):
                    images[mime] = data
            except ValueError:  # not base64
                pass
    return images


def safe_output(output: NotebookNode) -> NotebookNode | None:
    """The inert part of an output: its text, a real image, or a note of what is not shown."""
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return NotebookNode(output_type=kind, name=name, text=str(output.get("text", "")))
    if kind == "error":  # the template escapes the traceback lines (the only part it shows)
        traceback = [str(line) for line in output.get("traceback", [])]
        return NotebookNode(
            output_type=kind, ename=str(output.get("ename")), evalue=str(output.get("evalue")), traceback=traceback
        )
    if kind not in ("display_data", "execute_result"):
        return None
    data = output.get("data", {})
    safe = safe_images(data)
    dropped = [mime for mime in data if mime not in safe and mime != "text/plain"]
    if isinstance(data.get("text/plain"), str):
        safe["text/plain"] = data["text/plain"]
    elif not safe and dropped:
        safe["text/plain"] = f"[{', '.join(dropped)} output not shown in the feedback]"
    # The template writes an image's width and height unquoted: numbers only.
    metadata = {
        mime: {key: value for key, value in sizes.items() if key in ("width", "height") and isinstance(value, int)}
        for mime, sizes in output.get("metadata", {}).items()
        if mime in safe and isinstance(sizes, dict)
    }
    node = NotebookNode(output_type=kind, data=NotebookNode(safe), metadata=nbformat.from_dict(metadata))
    if kind == "execute_result":
        count = output.get("execution_count")
        node["execution_count"] = count if isinstance(count, int) else None
    return node


def safe_cell_metadata(metadata: dict) -> NotebookNode:
    """The nbgrader fields the feedback template shows, as it can show them safely; nothing else."""
    info = metadata.get("nbgrader")
    if not isinstance(info, dict):
        return NotebookNode()
    kept = {key: bool(info.get(key)) for key in ("grade", "solution", "task", "locked")}
    for key in ("points", "score"):  # the template needs them (None shows as 0) where GetGrades set them
        if key in info:
            kept[key] = info[key] if isinstance(info[key], (int, float)) else None
    if "grade_id" in info:  # printed unescaped in links and headings
        kept["grade_id"] = re.sub(r"[^A-Za-z0-9_-]", "_", str(info["grade_id"]))
    if "comment" in info:  # the grader's comment, rendered as markdown
        kept["comment"] = safe_markdown(str(info["comment"])) if info["comment"] else None
    return nbformat.from_dict({"nbgrader": kept})


MARKDOWN_TAGS = frozenset(
    "a abbr b blockquote br code dd del details div dl dt em h1 h2 h3 h4 h5 h6 hr i img kbd li ol p pre "
    "s span strong sub summary sup table tbody td th thead tr ul".split()
)
IMAGE_URLS = ("data:image/png;base64,", "data:image/jpeg;base64,")  # the attachments kept by safe_images


def safe_markdown(source: str, attachments: dict | None = None) -> str:
    """Markdown as inert HTML, on one line, which a markdown renderer passes on unchanged.

    nbconvert's renderer makes the HTML (headings, code, math for MathJax, attached images), then
    bleach keeps only the allowed tags, attributes and URLs: other tags show as text.
    """
    images = {name: kept for name, bundle in (attachments or {}).items() if (kept := safe_images(bundle))}
    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False, attachments=images)
    try:
        rendered = MarkdownWithMath(renderer=renderer).render(source)
    except Exception:  # a missing attachment, say: the text as written
        rendered = f"<pre>{html.escape(source)}</pre>"
    clean = bleach.clean(
        rendered, tags=MARKDOWN_TAGS, attributes=_allowed_attribute, protocols={"http", "https", "mailto", "data"}
    )
    # One line: the template renders it as markdown again, and an HTML block ends at a blank line.
    return "<div>" + clean.replace("\r", "&#13;").replace("\n", "&#10;") + "</div>"


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "title", "alt") or (name == "id" and tag in ("h1", "h2", "h3", "h4", "h5", "h6")):
        return True
    if (tag, name) == ("a", "href"):  # bleach checks the protocol; a link to data: is no page of ours
        return not re.sub(r"[\x00-\x20\x7f-\xa0\s]+", "", value).lower().startswith("data:")
    return (tag, name) == ("img", "src") and value.startswith(IMAGE_URLS)
