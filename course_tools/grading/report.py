"""The outcome of each student's grading: ``reports/chNN_outcomes.csv`` and the printed table."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

REPORT_COLUMNS = ("student", "score", "max_score", "status", "explanation", "sandbox")
SANDBOXED, UNSANDBOXED = "bubblewrap", "none (--unsafe-no-sandbox)"

# The outcomes, from the one that explains a student's grade best to the mildest.
STATUSES = (
    "changed the course",
    "unsafe file",
    "malformed notebook",
    "missing notebook",
    "kernel died",
    "timeout",
    "checks tampered with",
    "tampered test cell",
    "duplicated cell",
    "cell deleted",
    "delegated to reference_impl",
    "output flood",
    "exception in cell",
    "grading error",
    "ok",
)


@dataclass
class Outcome:
    """What happened to one student's submission."""

    student: str
    score: float = 0.0
    max_score: float = 0.0
    findings: list[tuple[str, str]] = field(default_factory=list)  # (status, what happened)
    details: list[str] = field(default_factory=list)  # which exercises fail, for the explanation
    sandboxed: bool = True  # False: graded with --unsafe-no-sandbox

    def add(self, status: str, explanation: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; the statuses are {STATUSES}")
        self.findings.append((status, explanation))

    @property
    def status(self) -> str:
        return min((status for status, _ in self.findings), key=STATUSES.index, default="ok")

    @property
    def explanation(self) -> str:
        ordered = sorted(self.findings, key=lambda finding: STATUSES.index(finding[0]))
        parts = [text for _, text in ordered] + self.details
        return "; ".join(parts) if parts else "every exercise passes"


def write_report(outcomes: list[Outcome], path: Path, kept_rows: list[dict[str, str]] = ()) -> Path:
    """One row per student, sorted by student: the outcomes, and rows kept from before."""
    rows = [dict(row) for row in kept_rows]
    rows += [
        dict(
            zip(
                REPORT_COLUMNS,
                (o.student, f"{o.score:g}", f"{o.max_score:g}", o.status, o.explanation, sandbox_label(o.sandboxed)),
            )
        )
        for o in outcomes
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["student"]))
    return path


def read_report(path: Path) -> dict[str, dict[str, str]]:
    """The outcomes of a report, by student."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def format_table(outcomes: list[Outcome], width: int = 100) -> str:
    rows = [("student", "score", "status", "explanation")]
    rows += [(o.student, f"{o.score:g}/{o.max_score:g}", o.status, o.explanation) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
        room = max(20, width - len(head) - 2)
        explanation = row[3] if len(row[3]) <= room else row[3][: room - 3] + "..."
        lines.append(f"{head}  {explanation}".rstrip())
    return "\n".join(lines)


def sandbox_label(sandboxed: bool) -> str:
    return SANDBOXED if sandboxed else UNSANDBOXED
