"""The authors' commands: notebooks and their text sources, kept together by jupytext.

Every chapter notebook ``book/NAME.ipynb`` is paired with a MyST Markdown text source
``book/_src/NAME.md``, and every exercise source notebook ``solutions/chNN/NAME.ipynb``
with a percent-format script ``solutions/chNN/_src/NAME.py`` (the ``jupytext.toml`` files
in ``book/`` and ``solutions/`` say so). Authors edit either side::

    python -m course_tools.notebooks sync [PATH ...]     # jupytext --sync: the newer side wins
    python -m course_tools.notebooks execute [PATH ...]  # sync, run, store the outputs
    python -m course_tools.notebooks check               # every pair present and in agreement

``make sync``, ``make notebooks`` and ``make test`` call these. A PATH is a notebook or
its text source; without one, ``sync`` and ``check`` take every paired notebook and
``execute`` every book chapter. Only book chapters store outputs: the exercise notebooks
are stored without them (nbgrader runs them when it grades).

Executing is deterministic: stream outputs are joined (how printing is cut into messages
depends on timing), no timing metadata is recorded, and the notebook's metadata is reset
to the kernel and the lexer, so an unchanged chapter gives the same file every time.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli
from jupytext.config import load_jupytext_config
from jupytext.paired_paths import paired_paths
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent  # the repository root
FOLDERS = ("book", "solutions")  # the folders whose notebooks are paired
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}
SYNC_COMMAND = "make sync"


@dataclass(frozen=True)
class Pair:
    """A notebook and its text source, with the jupytext format of the text."""

    notebook: Path
    text: Path
    text_format: dict

    @property
    def stores_outputs(self) -> bool:
        return self.notebook.relative_to(ROOT).parts[0] == "book"


def relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def pair_of(path: Path) -> Pair:
    """The pair that ``path`` (a notebook or its text source) belongs to."""
    path = Path(path).resolve()
    config = load_jupytext_config(str(path.parent))
    if config is None:
        raise ValueError(f"{relative(path)} is in no folder with a jupytext.toml: it is not paired")
    if path.suffix == ".ipynb":
        notebook = path
    elif path.parent.name != "_src":
        raise ValueError(f"{relative(path)} is neither a notebook nor a text source (those are in _src folders)")
    else:  # a text source: its notebook is in the folder above _src
        notebook = path.parent.parent / f"{path.stem}.ipynb"
        config = load_jupytext_config(str(notebook.parent))
    formats = config.default_formats(str(notebook))
    if not formats:
        raise ValueError(f"{relative(notebook)}: the jupytext.toml above it pairs no formats")
    others = [
        (Path(p), fmt) for p, fmt in paired_paths(str(notebook), "ipynb", formats) if fmt["extension"] != ".ipynb"
    ]
    if len(others) != 1:
        raise ValueError(f"{relative(notebook)}: expected one text source, jupytext.toml gives {len(others)}")
    text, text_format = others[0]
    if path.suffix != ".ipynb" and text != path:
        raise ValueError(f"{relative(path)} is not the text source of {relative(notebook)} (that is {relative(text)})")
    return Pair(notebook, text, text_format)


def all_pairs() -> list[Pair]:
    """Every notebook of the paired folders (book/, solutions/*/), and every orphan text source."""
    notebooks = sorted(
        path
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts and "_build" not in path.parts
    )
    pairs = [pair_of(path) for path in notebooks]
    known = {pair.text for pair in pairs}
    orphans = sorted(
        path
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("_src/*")
        if path.suffix in (".md", ".py") and path not in known
    )
    return pairs + [pair_of(path) for path in orphans]


def problems(pair: Pair) -> list[str]:
    """What is wrong with a pair: a missing side, or a text that is not what the notebook gives.

    The text source must be exactly what jupytext writes from the notebook, so any
    difference (a cell's source, its type, its metadata such as nbgrader's) is found.
    """
    fix = f"run `{SYNC_COMMAND}` (or `jupytext --sync {relative(pair.notebook)}`)"
    if not pair.notebook.exists():
        return [f"{relative(pair.text)} has no notebook {relative(pair.notebook)}: {fix} to make it"]
    if not pair.text.exists():
        return [f"{relative(pair.notebook)} has no text source {relative(pair.text)}: {fix} to make it"]
    config = load_jupytext_config(str(pair.notebook.parent))
    notebook = nbformat.read(pair.notebook, as_version=4)
    expected = jupytext.writes(notebook, fmt=pair.text_format, config=config)
    actual = pair.text.read_text(encoding="utf-8")
    if actual == expected:
        return []
    where = first_difference(
        jupytext.reads(expected, fmt=pair.text_format), jupytext.reads(actual, fmt=pair.text_format)
    )
    return [f"{relative(pair.text)} and {relative(pair.notebook)} disagree ({where}): {fix}"]


def first_difference(from_notebook, from_text) -> str:
    """Where two notebooks first differ, for a reader: a cell number and what differs."""
    for number, (a, b) in enumerate(zip(from_notebook.cells, from_text.cells), start=1):
        for what in ("cell_type", "source", "metadata"):
            if a.get(what) != b.get(what):
                return f"cell {number}: its {what.replace('_', ' ')} differs"
    if len(from_notebook.cells) != len(from_text.cells):
        return f"the notebook has {len(from_notebook.cells)} cells, the text {len(from_text.cells)}"
    return "the header or the layout of the text differs"


def sync(paths: list[Path]) -> None:
    """``jupytext --sync`` on each pair: the side changed last updates the other."""
    notebooks = [str(pair_of(path).notebook) for path in paths]
    for notebook in notebooks:
        if not Path(notebook).exists():  # a new text source: write its notebook first
            pair = pair_of(Path(notebook))
            jupytext_cli(["--quiet", "--to", "ipynb", "--output", notebook, str(pair.text)])
    if notebooks:
        jupytext_cli(["--quiet", "--sync", *notebooks])


def course_environment() -> None:
    """Offline, with the course data beside the checkout when it is there (as the tests do)."""
    os.environ.setdefault("LLM_COURSE_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("LLM_COURSE_DATA") and (shared / "README.md").exists():
        os.environ["LLM_COURSE_DATA"] = str(shared)
    data = os.environ.get("LLM_COURSE_DATA")
    if data and (Path(data) / "tiktoken_cache").is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(data) / "tiktoken_cache"))


def execute(path: Path, timeout: int = 1800) -> None:
    """Sync a book chapter with its text source, run it top to bottom, store its outputs."""
    pair = pair_of(path)
    if not pair.stores_outputs:
        raise ValueError(f"{relative(pair.notebook)} is stored without outputs: only book chapters are executed")
    sync([pair.notebook])
    course_environment()
    notebook = nbformat.read(pair.notebook, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(pair.notebook.parent)}},  # run where nbval runs it
        record_timing=False,
    )
    client.execute()
    widgets = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    notebook.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [progress_bar_as_text(output, widgets) for output in coalesce_streams(cell.outputs)]
    nbformat.validate(notebook)
    nbformat.write(notebook, pair.notebook)
    sync([pair.notebook])  # the sources did not change: this only renews the text's timestamp


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def progress_bar_as_text(output, widgets: dict):
    """A tqdm progress bar shown as a widget, as the text of its final state.

    In JupyterLab ``tqdm.auto`` draws a widget; a stored notebook keeps only the widget's
    first text (``0%| | 0/116``) unless it also keeps the widgets' state, which the book could
    only show with JavaScript from a CDN. So the bar is stored as the text tqdm prints in a
    terminal when it ends: ``Ep 1/1: 100%|##########| 116/116 [00:24<00:00, loss=2.565]``.
    Other outputs are returned unchanged.
    """
    view = output.get("data", {}).get(WIDGET_VIEW) if output.get("output_type") == "display_data" else None
    box = widgets.get(view.get("model_id", ""), {}) if view else {}
    children = [widgets.get(child.removeprefix("IPY_MODEL_"), {}) for child in box.get("state", {}).get("children", [])]
    kinds = [child.get("model_name") for child in children]
    if kinds != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return output
    left, bar, right = (child.get("state", {}) for child in children)
    fraction = min(max(bar.get("value", 0) / bar.get("max", 1), 0.0), 1.0) if bar.get("max") else 0.0
    filled = int(10 * fraction)
    text = f"{html.unescape(left.get('value', ''))}|{'█' * filled}{' ' * (10 - filled)}|{html.unescape(right.get('value', ''))}"
    return nbformat.v4.new_output("display_data", data={"text/plain": text.strip()})


def coalesce_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) outputs into one, so a rerun stores the same."""
    joined = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if output.output_type == "stream" and previous is not None and previous.get("name") == output.name:
            previous.text += output.text
        else:
            joined.append(output)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools.notebooks", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("sync", "jupytext --sync every pair (or the ones named): the side changed last updates the other"),
        ("execute", "sync, then run each book chapter (all, or the ones named) and store its outputs"),
        ("check", "report every notebook without its text source, or that disagrees with it"),
    ]:
        command = commands.add_parser(name, help=help_text)
        if name != "check":
            command.add_argument("paths", nargs="*", type=Path, help="notebooks or text sources")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            pairs = all_pairs()
            found = [problem for pair in pairs for problem in problems(pair)]
            for problem in found:
                print(problem, file=sys.stderr)
            print(f"{len(pairs)} paired notebooks, {len(found)} problems")
            return 1 if found else 0
        if args.command == "sync":
            sync(args.paths or [pair.notebook for pair in all_pairs()])
        else:
            chapters = args.paths or [pair.notebook for pair in all_pairs() if pair.stores_outputs]
            for path in chapters:
                print(f"executing {relative(pair_of(path).notebook)} ...", flush=True)
                execute(path)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
