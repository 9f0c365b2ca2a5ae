"""One staging job: parse a byte range of an extract into a private SQLite file.

Runs in a worker process (several in parallel on a large file) or in the importing process
itself. A job never touches the directory database: it writes the valid lines of its range
into its own staging file (no journal, no sync: a throw-away file), and every problem into
an issue file, with line numbers relative to the range. The importer renumbers the problems
once it knows how many lines each earlier range held.

A job over a practitioner file starts and ends on a practitioner boundary
(:func:`directory.staging.plan`), so a practitioner's lines are never split between jobs.
"""

# ruff: noqa: S608 - SQL is assembled from constant table names and dialect fragments;
# every value is a bound parameter.

from __future__ import annotations

import ctypes
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from directory.formats import FileKind, Header
from directory.issues import ImportRefused, Issue, Severity
from directory.parse_mailbox import MailboxParser
from directory.parse_person import PersonParser
from directory.reader import UTF8, RangeReader, Source

PERSON_TABLE = "stage_person"
MAILBOX_TABLE = "stage_mailbox"
PERSON_COLS = ("seq", "pid", "national_id", "person_raw", "name_terms", "act_key", "act_raw",
               "terms")
MAILBOX_COLS = ("seq", "address", "mailbox_type", "pid", "national_id", "raw", "name_terms",
                "terms")
#: A row's ``seq`` is ``job << SEQ_SHIFT | line in the job``: file order across jobs.
SEQ_SHIFT = 32


@dataclass(frozen=True)
class Job:
    index: int
    source_index: int
    source: Source
    header: Header
    #: Byte offset of the job's first line, and where to stop (None: end of the stream).
    start: int
    end: int | None
    #: Whether the file began with a UTF-8 byte-order mark (then it is UTF-8 for sure).
    bom: bool
    #: The file's encoding, decided once for all its ranges (None: the range decides).
    encoding: str | None
    lenient: bool
    strict: bool
    db_path: Path
    issues_path: Path
    #: Read the stream from its beginning and skip the header (zip members cannot seek).
    skip_header: bool = False


@dataclass
class JobResult:
    index: int
    #: Every line consumed, empty or undecodable ones included (to number later jobs).
    physical_lines: int = 0
    lines: int = 0
    rejected: int = 0
    encoding: str = UTF8
    errors: int = 0
    warnings: int = 0
    refused: bool = False


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the importing process dies (even by ``kill -9``)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - best effort
            pass


def create_table(db: sqlite3.Connection, kind: FileKind) -> None:
    """A staging table; ``seq`` is its rowid (rows come in ``seq`` order: appended)."""
    if kind is FileKind.PERSON:
        db.execute(
            f"CREATE TABLE {PERSON_TABLE} (seq INTEGER PRIMARY KEY, pid INTEGER NOT NULL, "
            "national_id TEXT, person_raw TEXT, name_terms TEXT, act_key INTEGER NOT NULL, "
            "act_raw TEXT NOT NULL, terms TEXT NOT NULL)"
        )
    else:
        db.execute(
            f"CREATE TABLE {MAILBOX_TABLE} (seq INTEGER PRIMARY KEY, address TEXT NOT NULL, "
            "mailbox_type TEXT NOT NULL, pid INTEGER, national_id TEXT, raw TEXT NOT NULL, "
            "name_terms TEXT NOT NULL, terms TEXT NOT NULL)"
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"t": "\t", "n": "\n"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def run(job: Job, progress: Any = None) -> JobResult:
    """Run one job (in this process); see the module docstring."""
    result = JobResult(job.index)
    db = sqlite3.connect(job.db_path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-4096")  # rows are appended: a small cache is enough
        kind = job.header.kind
        create_table(db, kind)
        with job.issues_path.open("w", encoding="utf-8") as out:

            def on_issue(issue: Issue) -> None:
                if issue.severity is Severity.ERROR:
                    result.errors += 1
                else:
                    result.warnings += 1
                out.write("\t".join((
                    str(issue.line), issue.severity.value, _escape(issue.column),
                    _escape(issue.message), _escape(issue.value),
                )) + "\n")
                if job.strict and issue.severity is Severity.ERROR:
                    raise ImportRefused(issue)

            reader = RangeReader(
                job.source, job.start, job.end, bom=job.bom, codec=job.encoding,
                skip_header=job.skip_header,
                on_issue=on_issue,
                progress=(lambda done: progress.__setitem__(job.index, done))
                if progress is not None else None,
            )
            base = job.index << SEQ_SHIFT
            db.execute("BEGIN")
            try:
                if kind is FileKind.PERSON:
                    pp = PersonParser(job.header, job.source.label, lenient=job.lenient,
                                      on_issue=on_issue)
                    marks = ", ".join("?" * len(PERSON_COLS))
                    db.executemany(
                        f"INSERT INTO {PERSON_TABLE} VALUES ({marks})",
                        pp.block_rows(reader.blocks(), base),
                    )
                    result.lines, result.rejected = pp.lines, pp.rejected
                else:
                    mp = MailboxParser(job.header, job.source.label, lenient=job.lenient,
                                       on_issue=on_issue)
                    marks = ", ".join("?" * len(MAILBOX_COLS))
                    db.executemany(
                        f"INSERT INTO {MAILBOX_TABLE} VALUES ({marks})",
                        mp.block_rows(reader.blocks(), base),
                    )
                    result.lines, result.rejected = mp.lines, mp.rejected
            except ImportRefused:
                result.refused = True
            db.execute("COMMIT")
            result.encoding = reader.encoding
            result.physical_lines = reader.physical_lines
    finally:
        db.close()
    return result


def run_in_worker(job: Job) -> JobResult:
    """Entry point in a worker process (progress shared through :data:`_PROGRESS`)."""
    return run(job, _PROGRESS)


_PROGRESS: Any = None


def init_worker(progress: Any) -> None:
    global _PROGRESS
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PROGRESS = progress
