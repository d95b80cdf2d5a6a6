"""What grading must leave as it was, checked before the batch and after each student.

The sandbox keeps a student's code away from the course; these checks prove it did, and
catch what a grading without the sandbox (``--unsafe-no-sandbox``) let through:

* the files: ``submitted/`` (every student's work), ``solutions/``, ``exercises/``,
  ``nbgrader_config.py`` and the course's own code (``course_tools``, ``reference_impl``),
  by SHA-256;
* the gradebook: the score of every student already graded in the batch, read back and
  compared with the score their grading recorded;
* the graded notebooks (``autograded/<student>/chNN/``) of the students already graded,
  by SHA-256, also kept in ``reports/chNN_graded.json`` so that ``feedback`` can refuse a
  page made from a notebook changed after its grading.

Any difference stops the batch (``IntegrityError``) and names the student whose grading
changed it (and, in a parallel batch, those graded at the same time).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
from pathlib import Path

from course_tools.grading.course import Course, GradingError


class IntegrityError(GradingError):
    """Grading changed something it must not: the batch stopped."""


def sha256_tree(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``folder`` (a link: where it points; a single file: its
    own hash under its name), to prove grading left it as it was."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return {}
    if not folder.is_dir() or folder.is_symlink():
        return {folder.name: _digest(folder)}
    found = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in [*files, *(d for d in dirs if Path(root, d).is_symlink())]:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = _digest(path)
    return dict(sorted(found.items()))


def _digest(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"link to {os.readlink(path)}"
    if not stat.S_ISREG(info.st_mode):
        return f"not a plain file (mode {oct(info.st_mode)})"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def protected_paths(course: Course) -> dict[str, Path]:
    """label -> path of everything no grading may change."""
    paths = {
        "submitted/": course.submitted,
        "solutions/": course.source,
        "exercises/": course.release,
        "nbgrader_config.py": course.root / "nbgrader_config.py",
    }
    for package in ("course_tools", "reference_impl"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            paths[f"{package}/"] = Path(list(spec.submodule_search_locations)[0])
    return paths


def snapshot(course: Course) -> dict[str, dict[str, str]]:
    """The hashes of everything ``protected_paths`` names (bytecode caches left out)."""
    trees = {}
    for label, path in protected_paths(course).items():
        trees[label] = {
            name: digest for name, digest in sha256_tree(path).items() if "__pycache__" not in Path(name).parts
        }
    return trees


def differences(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """What changed between two snapshots, in words: ``solutions/ch03/x.ipynb changed``."""
    found = []
    for label in sorted(set(before) | set(after)):
        old, new = before.get(label, {}), after.get(label, {})
        prefix = label if label.endswith("/") else ""
        for name in sorted(set(old) | set(new)):
            where = f"{prefix}{name}" if prefix else label
            if name not in new:
                found.append(f"{where} was removed")
            elif name not in old:
                found.append(f"{where} was added")
            elif old[name] != new[name]:
                found.append(f"{where} changed")
    return found


def graded_manifest_path(report_dir: Path, assignment: str) -> Path:
    return Path(report_dir) / f"{assignment}_graded.json"


def read_graded_manifest(report_dir: Path, assignment: str) -> dict[str, dict[str, str]]:
    path = graded_manifest_path(report_dir, assignment)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_graded_manifest(report_dir: Path, assignment: str, manifests: dict[str, dict[str, str]]) -> Path:
    """Keep the hashes of each graded folder (merged with those of students graded before)."""
    merged = {**read_graded_manifest(report_dir, assignment), **manifests}
    path = graded_manifest_path(report_dir, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n", encoding="utf-8")
    return path


def graded_folder(course: Course, assignment: str, student: str) -> Path:
    return course.autograded / student / assignment


def score_disagreements(recorded: dict[str, float], in_gradebook: dict[str, float]) -> list[str]:
    """Students whose gradebook score is not the one their grading recorded, in words."""
    found = []
    for student, score in sorted(recorded.items()):
        now = in_gradebook.get(student)
        if now is None:
            found.append(f"the gradebook has no grade for {student} (the grading recorded {score:g})")
        elif abs(now - score) > 1e-9:
            found.append(f"the gradebook gives {student} {now:g}, the grading recorded {score:g}")
    return found
