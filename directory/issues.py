"""Problems found in an extract, located as ``FILE:LINE: column «NAME»: what is wrong (value)``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    #: The line is skipped (or, with ``--strict``, the whole import refused).
    ERROR = "error"
    #: The line is imported; the problem is listed in the report (lenient identifier checks).
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Issue:
    file: str
    line: int
    column: str
    message: str
    value: str = ""
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: column «{self.column}»: {self.message}"
        return f"{where} ({self.value})" if self.value else where


class ImportRefused(Exception):
    """``--strict`` met an error, or a file cannot be read at all: nothing was imported."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue
