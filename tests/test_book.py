"""The book's structure: the TOC and the files agree, and every notebook is stored executed and clean.

These checks read files only (nothing is executed), so they take well under a second per
notebook. nbval (`make test`) is what re-runs the notebooks and compares their outputs.
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
PAGE_SUFFIXES = (".md", ".ipynb")


def toc_documents() -> list[str]:
    """Every document of _toc.yml, as a path relative to the root without suffix ("book/intro")."""
    site_map = parse_toc_yaml(ROOT / "_toc.yml")  # jupyter-book's own parser: also validates the format
    return sorted(site_map)


def toc_file(doc: str) -> Path | None:
    """The file behind a TOC entry, or None when there is no .md/.ipynb of that name."""
    for suffix in PAGE_SUFFIXES:
        if (ROOT / f"{doc}{suffix}").is_file():
            return ROOT / f"{doc}{suffix}"
    return None


def book_pages() -> list[Path]:
    """The .md and .ipynb files under book/, but not the figures' folder nor the notebooks'
    text sources (book/_src, see book/jupytext.toml)."""
    pages = [p for suffix in PAGE_SUFFIXES for p in BOOK.rglob(f"*{suffix}")]
    skipped = {"figures", "_src", ".ipynb_checkpoints"}
    return sorted(p for p in pages if not skipped & set(p.relative_to(BOOK).parts))


def book_notebooks() -> list[Path]:
    return [p for p in book_pages() if p.suffix == ".ipynb"]


def toc_notebooks() -> list[Path]:
    """Every notebook the book shows: the chapters and the exercises."""
    files = (toc_file(doc) for doc in toc_documents())
    return [f for f in files if f is not None and f.suffix == ".ipynb"]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_toc_lists_the_landing_page_first_and_the_six_parts():
    site_map = parse_toc_yaml(ROOT / "_toc.yml")
    assert site_map.root.docname == "book/intro"
    captions = [subtree.caption for subtree in site_map.root.subtrees]
    assert captions == [
        "Foundations",
        "The GPT model",
        "Pretraining and fine-tuning",
        "Appendices",
        "Exercises",
        "For instructors",
    ]


@pytest.mark.parametrize("doc", toc_documents())
def test_every_toc_entry_is_a_file(doc):
    assert toc_file(doc) is not None, f"_toc.yml lists {doc!r} but neither {doc}.md nor {doc}.ipynb exists"


def test_every_page_under_book_is_in_the_toc():
    listed = set(toc_documents())
    missing = [relative(p) for p in book_pages() if relative(p.with_suffix("")) not in listed]
    assert not missing, (
        f"pages under book/ that _toc.yml does not list (add them, or move them to book/figures/): {missing}"
    )


def test_the_book_is_built_from_stored_outputs_only():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    # "off": the book never runs code; nbval checks the stored outputs instead.
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True


# --- every notebook is stored valid, executed in order, and clean -------------------------


def read_notebook(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4, f"{relative(path)} is nbformat {nb.nbformat}, expected 4"
    nbformat.validate(nb)  # raises ValidationError naming the broken field
    return nb


def calls_print_at_top_level(source: str) -> bool:
    """True when running the cell certainly prints: a print(...) outside any def/class."""
    python = TransformerManager().transform_cell(source)  # turns %magics into plain Python
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return False
    to_visit = list(tree.body)
    while to_visit:
        node = to_visit.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # defining a function prints nothing
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            return True
        to_visit.extend(ast.iter_child_nodes(node))
    return False


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]


@pytest.mark.parametrize("path", book_notebooks(), ids=relative)
def test_notebook_is_valid_v4_with_the_python3_kernel(path):
    nb = read_notebook(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{relative(path)}: kernelspec must be python3"
    assert nb.metadata.get("kernelspec", {}).get("language", "python") == "python"


@pytest.mark.parametrize("path", book_notebooks(), ids=relative)
def test_notebook_is_stored_executed_top_to_bottom(path):
    cells = code_cells(read_notebook(path))
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{relative(path)}: execution counts are {counts}; restart the kernel and run all cells "
        f"(jupyter nbconvert --to notebook --execute --inplace {relative(path)})"
    )
    silent = [i for i, cell in enumerate(cells, 1) if calls_print_at_top_level(cell.source) and not cell.outputs]
    assert not silent, f"{relative(path)}: code cells {silent} print but have no stored output"


# A memory address in a repr ("<object at 0x7f...>"): differs on every run. Short hex literals
# such as byte values (0xe2) are content, not addresses.
MEMORY_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,}\b")
# Absolute paths of the machine that ran the notebook: meaningless to readers, and leaky.
LOCAL_PATH = re.compile(r"(?<![\w.])(/work/|/root/|/home/\w|/tmp/|/Users/\w|[A-Za-z]:\\Users\\)")
TRACEBACK = "Traceback (most recent call last)"


def output_texts(output) -> list[str]:
    """The text a reader sees of one stored output (images are skipped: base64 is not text)."""
    if output.output_type == "stream":
        return [output.text]
    if output.output_type in ("execute_result", "display_data"):
        return [
            value if isinstance(value, str) else "".join(value)
            for mime, value in output.data.items()
            if mime.startswith("text/")
        ]
    return []


@pytest.mark.parametrize("path", toc_notebooks(), ids=relative)
def test_stored_outputs_hold_no_errors_addresses_or_local_paths(path):
    problems = []
    for number, cell in enumerate(read_notebook(path).cells, 1):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"cell {number}: stored error {output.ename}: {output.evalue}")
            for text in output_texts(output):
                for pattern, what in [(MEMORY_ADDRESS, "a memory address"), (LOCAL_PATH, "a local path")]:
                    if match := pattern.search(text):
                        problems.append(f"cell {number}: {what} {match.group(0)!r}")
                if TRACEBACK in text:
                    problems.append(f"cell {number}: a traceback")
    assert not problems, f"{relative(path)}:\n" + "\n".join(problems)
