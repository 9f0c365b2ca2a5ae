"""The import report: counters, disagreements with manual edits, every problem found.

Problems are spooled to a temporary file as they are found (an extract full of errors must
not fill memory); the report is assembled at the end, summary first. Only the first few
problems are kept in memory, for the command line to show.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from directory.issues import Issue, Severity


class IssueLog:
    """Counts problems, keeps the first ones, spools all of them."""

    def __init__(self, keep: int = 50) -> None:
        self.keep = keep
        self.first: list[Issue] = []
        self.errors = 0
        self.warnings = 0
        self._spool: TextIO = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def add(self, issue: Issue) -> None:
        if issue.severity is Severity.ERROR:
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.first) < self.keep:
            self.first.append(issue)
        self._spool.write(f"{issue.severity.value}: {issue}\n")

    def write_report(
        self, path: Path, title: str, summary: Iterable[str], disagreements: Iterable[str]
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with tmp.open("w", encoding="utf-8") as out:
            out.write(f"{title}\n\n")
            for line in summary:
                out.write(f"{line}\n")
            dis = list(disagreements)
            out.write(f"\nManual edits kept against this import ({len(dis)}):\n")
            for line in dis:
                out.write(f"  {line}\n")
            out.write(
                f"\nProblems ({self.errors} errors: line skipped; "
                f"{self.warnings} warnings: line imported):\n"
            )
            self._spool.flush()
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, out)
        tmp.replace(path)

    def close(self) -> None:
        self._spool.close()
