"""Write a chapter notebook from a list of cells, and optionally execute it in place.

The chapter scripts (``make_ch02.py``, ``make_appendix_a.py``, ...) describe each notebook as a list of
``md(...)`` and ``code(...)`` cells. Writing is deterministic: cell ids are numbered, not
random, and the metadata is kept minimal, so regenerating an unchanged chapter gives the
same file.

    .venv/bin/python book/_src/make_ch03.py            # write and execute (stores outputs)
    .venv/bin/python book/_src/make_ch03.py --no-exec  # write the cells only

Executing uses nbclient, the library behind ``jupyter nbconvert --execute``, with the
notebook's folder as working directory, as nbval does.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]  # the repository root
BOOK = ROOT / "book"

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(_clean(text))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(_clean(text))


def build(cells: list[nbformat.NotebookNode], prefix: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for number, cell in enumerate(cells):
        cell.id = f"{prefix}-{number:03d}"  # stable ids: nbformat would make random ones
    nb.cells = cells
    return nb


def course_environment() -> None:
    """Offline, with the course data beside the checkout when it is there (as the tests do)."""
    os.environ.setdefault("LLM_COURSE_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("LLM_COURSE_DATA") and (shared / "README.md").exists():
        os.environ["LLM_COURSE_DATA"] = str(shared)
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken_cache"))


def execute(nb: nbformat.NotebookNode, folder: Path, timeout: int = 600) -> None:
    course_environment()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}, record_timing=False
    )
    client.execute()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)


def coalesce_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) outputs into one.

    How a cell's printing is cut into stream messages depends on timing; joined, the stored
    outputs are the same on every run.
    """
    joined = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            joined.append(output)
    return joined


def main(cells: list[nbformat.NotebookNode], name: str) -> None:
    parser = argparse.ArgumentParser(description=f"Write book/{name}.ipynb (and execute it).")
    parser.add_argument("--no-exec", action="store_true", help="write the cells without running them")
    args = parser.parse_args()

    nb = build(cells, prefix=name.split("_")[0])
    nbformat.validate(nb)
    if not args.no_exec:
        execute(nb, BOOK)
    path = BOOK / f"{name}.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)} ({len(cells)} cells{'' if args.no_exec else ', executed'})")
