"""The feedback pages carry nothing a student could make active, and a student's text cannot break them.

Each page is made as ``nbgrader generate_feedback`` makes it: the preprocessors and HTMLExporter
settings of ``nbgrader_config.py``, nbgrader's ``feedback`` template; only ``GetGrades`` is left out
(it needs a gradebook: the test notebooks carry the scores it would set). The notebooks are the
autograded notebooks a hostile student could leave: outputs, markdown, metadata of their choosing.
"""

from __future__ import annotations

import base64
import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)).decode()
SCRIPT_B64 = base64.b64encode(b"<script>alert('png')</script>").decode()
# Elements that load or run something; the template ships some (its CSS, MathJax), a student adds none.
ACTIVE = {"script", "iframe", "frame", "object", "embed", "applet", "style", "link", "meta", "base", "form", "svg"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "srcset", "poster", "background"}


# ----------------------------------------------------------------------------- making pages


@pytest.fixture(autouse=True)
def _in_empty_course(tmp_path, monkeypatch):
    """OutcomeNote reads ``reports/`` of the current folder: an empty one unless a test writes it."""
    monkeypatch.chdir(tmp_path)


def feedback_page(nb, sanitize_html: bool | None = None, outcomes: bool = True, name: str = "ch02_exercises") -> str:
    """The HTML page of ``nb``, made with the course's feedback settings.

    ``sanitize_html`` overrides the exporter's setting if given; without ``outcomes``, OutcomeNote
    finds no report.
    """
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    if sanitize_html is not None:
        config.HTMLExporter.sanitize_html = sanitize_html
    if not outcomes:
        config.OutcomeNote.report_dir = "no-such-folder"
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)  # adds the template
    exporter = HTMLExporter(parent=converter, config=converter.config)
    for preprocessor in converter.preprocessors:
        if not str(preprocessor).endswith("GetGrades"):
            exporter.register_preprocessor(preprocessor)
    resources = {
        "nbgrader": {
            "notebook": name,  # the page's title and heading
            "assignment": "ch02",
            "student": "mallory",
            "score": 1.0,
            "max_score": 4.0,
            "late_penalty": 0.0,
        }
    }
    html, _ = exporter.from_notebook_node(nbformat.from_dict(nb), resources)
    return html


def nbgrader_cell(cell, **info):
    cell.metadata["nbgrader"] = {"schema_version": 3, "solution": False, "grade": False, "locked": False, **info}
    return cell


def checks_cell(source: str, outputs=(), grade_id: str = "check_tokens", score: float = 0.0):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=3)
    return nbgrader_cell(cell, grade=True, locked=True, grade_id=grade_id, points=2.0, score=score)


def solution_cell(source: str, outputs=()):
    return nbgrader_cell(
        new_code_cell(source, outputs=list(outputs), execution_count=2), solution=True, grade_id="answer"
    )


def notebook(*cells, **metadata):
    return new_notebook(cells=list(cells), metadata={"language_info": {"name": "python"}, **metadata})


BASELINE = notebook(
    new_markdown_cell("## Exercise 1\n\nWrite `tokenize`."),
    solution_cell("def tokenize(text):\n    return text.split()", [new_output("stream", name="stdout", text="ok\n")]),
    checks_cell("assert tokenize('a b') == ['a', 'b']"),
)


# ----------------------------------------------------------------------------- reading pages


class Page(HTMLParser):
    """The start tags of a page, the text of its scripts and its visible text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[tuple, str]] = []
        self.text_parts: list[str] = []
        self._in: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in.append(tag)
            if tag == "script":
                self.scripts.append((tuple(sorted(attrs, key=str)), ""))

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._in and self._in[-1] == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif not self._in:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.text_parts).split())

    def count(self, tag: str) -> int:
        return sum(name == tag for name, _ in self.tags)


def squashed(url: str) -> str:
    """A URL as a browser reads its scheme: no whitespace or control characters, lower case."""
    return re.sub(r"[\x00-\x20\x7f-\xa0\s]+", "", url).lower()


def assert_inert(html: str) -> Page:
    """Nothing active beyond what the template itself ships (the page of BASELINE shows that)."""
    page, baseline = Page(html), Page(feedback_page(BASELINE, outcomes=False))
    assert sorted(page.scripts) == sorted(baseline.scripts)
    for tag in ACTIVE:
        assert page.count(tag) == baseline.count(tag), f"<{tag}> added to the page"
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}={value!r}>"
            if name in URL_ATTRIBUTES and value is not None:
                url = squashed(value)
                assert not url.startswith(("javascript:", "vbscript:", "file:")), f"<{tag} {name}={value!r}>"
                image = tag == "img" and name == "src" and url.startswith(("data:image/png;", "data:image/jpeg;"))
                assert image or not url.startswith("data:"), f"<{tag} {name}={value[:60]!r}>"
    return page


# ----------------------------------------------------------------------------- hostile notebooks


def hostile_outputs():
    display = {
        "text/html": "<script>alert('html')</script><img src=x onerror=alert('img')>",
        "application/javascript": "alert('js')",
        "image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert('svg')</script></svg>",
        "text/markdown": "<iframe src='javascript:alert(1)'></iframe>[x](javascript:alert('md'))",
        "text/latex": "$\\href{javascript:alert(1)}{x}$",
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
    }
    return [
        new_output("display_data", data={**display, "text/plain": "<HTML object>"}),
        new_output("display_data", data={"text/html": "<b>no text</b>"}, metadata={"text/html": {"isolated": True}}),
        new_output("execute_result", data={"application/javascript": "alert('only js')"}, execution_count=1),
        new_output("display_data", data={"image/png": SCRIPT_B64, "text/plain": "<Figure>"}),
        new_output(
            "display_data",
            data={"image/png": PNG},
            metadata={
                "image/png": {"width": "1 onerror=alert('w')", "height": "2 onload=alert('h')"},
                "filenames": {"image/png": "javascript:alert(1)"},
            },
        ),
        new_output("stream", name="stdout", text="<script>alert('print')</script>\n"),
        new_output(
            "error",
            ename="<script>alert('ename')</script>",
            evalue="<img src=x onerror=alert('ev')>",
            traceback=["<script>alert('tb')</script>"],
        ),
    ]


HOSTILE_MARKDOWN = """# My answer <script>alert('md-script')</script>

<img src=x onerror="alert('md-img')"> <iframe src="https://evil.example"></iframe>
<a href="javascript:alert('md-a')">click</a> [link](javascript:alert('md-link')) [enc](&#106;avascript:alert(1))
<style>body { display: none }</style> <object data="x.swf"></object> <embed src="x.swf">
<svg onload="alert('md-svg')"></svg> <form action="javascript:alert(1)"><button>go</button></form>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a> <https://ok.example>
"""


def hostile_notebook():
    pasted = new_markdown_cell("![pasted](attachment:evil.html)")  # an attachment that is no image
    pasted["attachments"] = {"evil.html": {"text/html": base64.b64encode(b"<script>alert(1)</script>").decode()}}
    answer = solution_cell("display(HTML('<script>alert(1)</script>'))", hostile_outputs())
    answer.metadata["tags"] = ['"><script>alert("tag")</script>']
    answer.metadata["magics_language"] = "no-such-lexer"
    checks = checks_cell("assert True", grade_id='x"><script>alert("grade_id")</script>')
    written = nbgrader_cell(
        new_markdown_cell("<script>alert('written')</script>"),
        solution=True,
        grade=True,
        grade_id="essay",
        points=1.0,
        score=None,
    )
    written.metadata["nbgrader"]["comment"] = "<img src=x onerror=alert('comment')>"
    forged = nbgrader_cell(new_markdown_cell("<script>alert('locked')</script>"), locked=True)  # "instructor's"
    widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    return notebook(
        new_markdown_cell(HOSTILE_MARKDOWN),
        pasted,
        answer,
        checks,
        written,
        forged,
        new_raw_cell("<script>alert('raw')</script>", metadata={"raw_mimetype": "text/html"}),
        widgets=widgets,
        title="</title><script>alert('title')</script>",
        celltoolbar="Create Assignment",
    )


# ----------------------------------------------------------------------------- the tests


def test_the_config_makes_pages_safe_just_before_the_exporter():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    preprocessors = list(config.GenerateFeedback.preprocessors)
    assert preprocessors[-2:] == [
        "course_tools.nbgrader_plugins.SafeFeedback",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
    assert config.HTMLExporter.sanitize_html is True


@pytest.mark.parametrize("sanitize_html", [None, False], ids=["course settings", "exporter setting lost"])
def test_a_hostile_notebook_gives_an_inert_page(sanitize_html):
    page = assert_inert(feedback_page(hostile_notebook(), sanitize_html, name="<img src=x onerror=alert('name')>"))
    # What the student wrote shows as text; nothing they put in runs.
    assert "<script>alert('md-script')</script>" in page.text
    assert "<script>alert('print')</script>" in page.text
    assert "<script>alert('tb')</script>" in page.text
    assert "<script>alert('written')</script>" in page.text
    assert "[text/html, image/svg+xml, " not in page.text  # one note per output, text/plain kept if there
    assert "<HTML object>" in page.text
    assert "[text/html output not shown in the feedback]" in page.text
    assert "[application/javascript output not shown in the feedback]" in page.text
    assert not any(tag == "a" and "javascript" in str(attrs.get("href", "")).lower() for tag, attrs in page.tags)
    assert not any("<" in str(value) for _, attrs in page.tags for value in attrs.values())
    assert ("a", {"name": "x___script_alert__grade_id____script_"}) in page.tags  # the grade_id, made safe


def test_only_real_images_are_shown_as_images():
    nb = notebook(solution_cell("plot()", hostile_outputs()))
    page = assert_inert(feedback_page(nb))
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert [attrs["src"] for attrs in images] == [f"data:image/png;base64,{PNG}"]
    assert "width" not in images[0] and "height" not in images[0]
    assert "<Figure>" in page.text  # the bogus PNG's text/plain


def test_markdown_keeps_its_formatting_and_math():
    text = (
        '## Exercise 2\n\nThen `"<|endoftext|>"` gets the **next** id; the weights are $e^{s_{ij}} / \\sum_k e^{s_{ik}}$.'
        "\n\n* a list item with a [link](https://example.org)\n\n```python\nx = 1 < 2\n```\n\n![plot](attachment:plot.png)"
    )
    cell = new_markdown_cell(text)
    cell["attachments"] = {"plot.png": {"image/png": PNG}}
    page = assert_inert(feedback_page(notebook(cell)))
    assert {"h2", "strong", "code", "li", "pre"} <= {tag for tag, _ in page.tags}
    assert '"<|endoftext|>"' in page.text and "x = 1 < 2" in page.text
    assert "$e^{s_{ij}} / \\sum_k e^{s_{ik}}$" in page.text  # for MathJax to typeset
    assert ("a", {"href": "https://example.org"}) in page.tags
    assert any(tag == "img" and attrs.get("src") == f"data:image/png;base64,{PNG}" for tag, attrs in page.tags)


def test_the_hidden_region_of_a_checks_cell_is_removed():
    source = "assert tokenize('a') == ['a']\n### BEGIN HIDDEN TESTS\nassert tokenize('secret') == ['secret']\n### END HIDDEN TESTS\nprint('done')"
    page = assert_inert(feedback_page(notebook(checks_cell(source))))
    assert "tokenize" in page.text and "done" in page.text
    assert "secret" not in page.text and "HIDDEN TESTS" not in page.text


def test_an_unclosed_hidden_region_of_a_checks_cell_hides_the_rest_of_the_cell():
    source = "assert visible()\n### BEGIN HIDDEN TESTS\nassert secret()"
    page = Page(feedback_page(notebook(checks_cell(source))))
    assert "visible" in page.text and "secret" not in page.text


@pytest.mark.parametrize(
    "marker",
    [
        "### BEGIN HIDDEN TESTS",
        "### BEGIN HIDDEN TESTS\nx = 1\n### END HIDDEN TESTS",
        "### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS",
    ],
    ids=["unclosed", "balanced", "nested"],
)
def test_a_student_cell_with_hidden_test_markers_is_shown_as_written(marker):
    source = f"def tokenize(text):\n    {marker.replace(chr(10), chr(10) + '    ')}\n    return text.split()"
    plain = new_code_cell(f"# scratch\n{marker}\nprint('mine')")
    nb = notebook(solution_cell(source), new_markdown_cell(f"Notes:\n\n{marker}\n\nmore notes"), plain)
    page = Page(feedback_page(nb))  # no RuntimeError
    assert page.text.count("BEGIN HIDDEN TESTS") == 3 * marker.count("BEGIN HIDDEN TESTS")
    assert "return text.split()" in page.text and "more notes" in page.text and "print('mine')" in page.text


def test_the_honest_parts_survive():
    failed = new_output(
        "error",
        ename="CheckFailed",
        evalue="tokenize('a b') is ['a b'], expected ['a', 'b']",
        traceback=[
            "Traceback (most recent call last)",
            '  File "checks.py", line 3, in expect_equal',
            "CheckFailed: ...",
        ],
    )
    plot = new_output("display_data", data={"image/png": PNG + "\n", "text/plain": "<Figure size 640x480>"})
    photo = new_output("display_data", data={"image/jpeg": JPEG})
    printed = new_output("stream", name="stdout", text="vocabulary size: 1130\n")
    result = new_output("execute_result", data={"text/plain": "[1, 2, 3]", "text/html": "<b>1</b>"}, execution_count=2)
    nb = notebook(solution_cell("tokenize('a b')", [printed, plot, photo, result]), checks_cell("check()", [failed]))
    page = assert_inert(feedback_page(nb))
    sources = ["".join(attrs.get("src", "").split()) for tag, attrs in page.tags if tag == "img"]
    assert sources == [f"data:image/png;base64,{PNG}", f"data:image/jpeg;base64,{JPEG}"]
    assert "vocabulary size: 1130" in page.text and "[1, 2, 3]" in page.text
    assert "CheckFailed: tokenize('a b') is ['a b'], expected ['a', 'b']" in page.text
    assert "Traceback" not in page.text and "checks.py" not in page.text
    assert "Score: 0.0 / 2.0" in page.text  # the checks cell's score, set by GetGrades


def test_the_outcome_note_shows_the_explanation_as_text(tmp_path):
    (tmp_path / "reports").mkdir()
    with open(tmp_path / "reports" / "ch02_outcomes.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["student", "score", "max_score", "status", "explanation"])
        writer.writeheader()
        explanation = (
            "the notebook raised <script>alert('why')</script> [x](javascript:alert(1)) `<img src=x onerror=alert(2)>`"
        )
        writer.writerow(
            {
                "student": "mallory",
                "score": "1",
                "max_score": "4",
                "status": "fail`<script>alert('status')</script>`",
                "explanation": explanation,
            }
        )
    page = assert_inert(feedback_page(BASELINE))
    assert "Grading outcome: 1 of 4 points" in page.text
    assert "the notebook raised <script>alert('why')</script>" in page.text
    assert "<img src=x onerror=alert(2)>" in page.text and "alert('status')" in page.text
