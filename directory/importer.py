"""Importing Annuaire Santé extracts: one import = one transaction (issue 6).

Phases, on a connection of the import's own:

1. **read and stage** — each file (or zip member) is recognised from its header, streamed,
   validated line by line, and loaded into temporary staging tables (in parallel worker
   processes, :mod:`directory.staging`). Only temporary tables are written, so on SQLite the
   database's write lock is not taken yet and the running server keeps writing mail
   meanwhile.
2. **prepare** — still without the write lock: the staged mailbox addresses (and, for a
   delta, the staged practitioner and activity keys) are indexed in temporary tables, and
   repeated addresses are reported (:func:`directory.merge.prepare`).
3. **merge** — in *one* transaction (its first statement takes SQLite's write lock, an
   advisory lock on PostgreSQL against a concurrent import): set-based upserts and the delta
   (:mod:`directory.merge`), the search documents (:mod:`directory.search_index`: rebuilt
   at once after a first import, patched after a small delta), the import log row and the
   audit journal entry. A crash or ``kill -9`` at any point before the commit leaves the
   previous directory exactly as it was.

A large first import on SQLite (an empty directory) has its search documents and full-text
index built from the staged rows by a helper process while the merge runs, then copied in
the same transaction (:mod:`directory.fresh_index`): the same index, on both cores.

SQLite stays in WAL mode with ``synchronous=FULL``: in WAL mode only the commit syncs, so a
large transaction costs one fsync; relaxing it would gain nothing and lose durability. The
import connection gets a large page cache, and its temporary tables go to a file (not RAM)
so memory stays bounded. After the commit the WAL is checkpointed and truncated.

Staging files live in a working directory (:mod:`directory.workdir`) beside the SQLite
database, or in the temp directory for PostgreSQL; it is removed when the import ends, and
the next import removes the ones killed imports left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, insert, select, text

from directory import fresh_index, merge, search_index, staging
from directory.formats import FileKind
from directory.issues import ImportRefused, Issue, Severity
from directory.reader import Source, SourceError, sources
from directory.report import IssueLog
from directory.tables import SOURCE_IMPORT, import_log
from directory.workdir import WorkDir, open_workdir

if TYPE_CHECKING:
    from audit.journal import Journal

#: SQLite page cache of the import connection (KiB): main database, then temporary tables.
SQLITE_CACHE_KIB = 64 * 1024
SQLITE_TEMP_CACHE_KIB = 16 * 1024
#: PostgreSQL advisory lock key serialising imports ("DIR" in ASCII).
PG_IMPORT_LOCK = 0x444952
#: An import may deactivate at most this share of the listed practitioners, and of the
#: listed mailboxes (:attr:`ImportOptions.max_deactivation`). Practitioners leave the
#: register a few at a time: the benchmark's delta retires 1 %.
DEFAULT_MAX_DEACTIVATION = 0.10


@dataclass(frozen=True)
class Progress:
    phase: str  # "read", "merge", "index", "commit", "done"
    done: int = 0  # bytes read so far (phase "read")
    total: int = 0  # bytes to read in all files


@dataclass
class FileReport:
    label: str
    kind: FileKind
    encoding: str = ""
    lines: int = 0
    rejected: int = 0


@dataclass
class ImportResult:
    import_id: int
    files: list[FileReport]
    merge: merge.MergeResult
    errors: int
    warnings: int
    first_issues: list[Issue]
    report_path: Path | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    def summary_lines(self) -> list[str]:
        m = self.merge
        out = [f"Import n°{self.import_id}"]
        for f in self.files:
            out.append(
                f"  {f.label}: {f.kind.value} extract, {f.encoding}, {f.lines} lines, "
                f"{f.rejected} rejected"
            )
        out += [
            f"Practitioners: {m.practitioners.added} added, {m.practitioners.changed} changed, "
            f"{m.practitioners.deactivated} deactivated",
            f"Activities: {m.activities.added} added, {m.activities.changed} reactivated, "
            f"{m.activities.deactivated} deactivated",
            f"Mailboxes: {m.mailboxes.added} added, {m.mailboxes.changed} changed, "
            f"{m.mailboxes.deactivated} deactivated",
            f"Manual edits kept against the import: {len(m.disagreements)}",
            f"Problems: {self.errors} errors (lines skipped), {self.warnings} warnings",
            f"Search index: {m.index} ({m.documents} documents)",
        ]
        return out


@dataclass
class ImportOptions:
    #: Refuse the whole import on the first error. A strict import is strict about
    #: identifiers too: a wrong check digit is then an error (``lenient_identifiers`` is
    #: ignored).
    strict: bool = False
    #: A wrong check digit (Luhn) is a warning, not an error (DOMAIN.md §3).
    lenient_identifiers: bool = True
    actor: str = "cli"
    report_path: Path | None = None
    progress: Callable[[Progress], None] | None = None
    journal: Journal | None = None
    now: datetime | None = None
    #: Checkpoint and truncate SQLite's WAL after the commit.
    checkpoint: bool = True
    #: Parallel parsing (None: the default of :class:`staging.StageOptions`).
    workers: int | None = None
    min_chunk: int | None = None
    #: Where staging files go (default: beside the SQLite database, else the temp dir).
    workdir: Path | None = None
    #: On SQLite, build a first import's search index beside the merge
    #: (:mod:`directory.fresh_index`), or rebuild it after the merge (False); None: beside
    #: the merge when the extracts weigh :data:`fresh_index.MIN_BYTES` or more.
    fresh_index: bool | None = None
    #: Refuse an import that would deactivate more than this share of the practitioners or
    #: of the mailboxes an earlier import listed (None: no limit). A truncated download
    #: would otherwise retire the missing part of the directory, and the professionals
    #: whose mailboxes it holds could no longer send (README «Directory»).
    max_deactivation: float | None = DEFAULT_MAX_DEACTIVATION


def _sqlite_tune(conn: Connection) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    raw.execute("PRAGMA temp_store=FILE")
    raw.execute(f"PRAGMA temp.cache_size=-{SQLITE_TEMP_CACHE_KIB}")


def _workdir(engine: Engine, options: ImportOptions) -> WorkDir:
    base = options.workdir
    if base is None and engine.dialect.name == "sqlite" and engine.url.database:
        base = Path(engine.url.database).resolve().parent
    return open_workdir(base)


def import_files(engine: Engine, paths: Iterable[Path], options: ImportOptions) -> ImportResult:
    """Import extract files (``.txt`` or ``.zip``, both kinds detected from their header).

    Raises :class:`ImportRefused` (nothing imported) on an unreadable file, an unknown
    header, an extract without a valid line, an import that would deactivate more than
    ``max_deactivation`` of the directory, or — with ``strict`` — the first error (in file
    order, wrong check digits included); :class:`SourceError` for a path that is not an
    extract (missing, a directory, a damaged zip).
    """
    now = options.now or datetime.now(UTC)
    log = IssueLog()
    timings: dict[str, float] = {}
    progress = options.progress
    all_sources: list[Source] = []
    for p in paths:
        all_sources.extend(sources(Path(p)))

    def on_issue(issue: Issue) -> None:
        log.add(issue)
        if options.strict and issue.severity is Severity.ERROR:
            raise ImportRefused(issue)

    work = _workdir(engine, options)
    workdir = work.path
    lenient = options.lenient_identifiers and not options.strict
    defaults = staging.StageOptions(lenient=lenient, strict=options.strict, workdir=workdir)
    stage_opts = staging.StageOptions(
        lenient=lenient, strict=options.strict, workdir=workdir,
        workers=options.workers or defaults.workers,
        min_chunk=options.min_chunk or defaults.min_chunk,
    )
    files: list[FileReport] = []
    conn: Connection | None = None
    helper: fresh_index.Helper | None = None
    try:
        t0 = time.perf_counter()
        try:
            jobs = staging.plan(all_sources, stage_opts)
            results = staging.run(
                jobs, stage_opts,
                (lambda done, total: progress(Progress("read", done, total))) if progress
                else None,
            )
            staged = staging.collect(jobs, results, on_issue)
            files = _file_reports(all_sources, staged)
            _refuse_empty(files)
        except ImportRefused as exc:
            _write_refused(log, options, exc, files)
            _journal_refused(engine, options)
            raise
        timings["read_and_stage"] = time.perf_counter() - t0

        tp = time.perf_counter()
        conn = engine.connect()
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _sqlite_tune(conn)
        staging.expose(conn, staged)
        dups = merge.prepare(conn, staged.kinds)
        if dups:
            try:
                for seq, address, first_seq in dups:
                    job, line = staged.where(seq)
                    _, first = staged.where(first_seq)
                    files[job.source_index].rejected += 1
                    on_issue(Issue(job.source.label, line, "Adresse BAL",
                                   f"mailbox listed twice (first at line {first}): "
                                   "this line is skipped", address))
            except ImportRefused as exc:
                _write_refused(log, options, exc, files)
                conn.invalidate()
                conn.close()
                conn = None
                _journal_refused(engine, options)
                raise
            staging.delete_rows(conn, staged, FileKind.MAILBOX, [d[0] for d in dups])
        big = sum(src.size for src in all_sources) >= fresh_index.MIN_BYTES
        if sqlite and (big if options.fresh_index is None else options.fresh_index):
            with conn.begin():
                first = fresh_index.directory_empty(conn)
            if first:  # its search index is built from the staged rows, beside the merge
                helper = fresh_index.start(workdir, staged)
                fresh_index.attach(conn, helper)
        timings["prepare"] = time.perf_counter() - tp

        t1 = time.perf_counter()
        if progress:
            progress(Progress("merge"))
        # (on SQLite a deferred BEGIN, whose first statement takes the database's write
        # lock: BEGIN IMMEDIATE would also lock every attached file, the index helper's
        # included, while it writes)
        with conn.begin() as transaction:
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_IMPORT_LOCK})
            imp = _reserve_import_id(conn)
            if helper is not None and not fresh_index.directory_empty(conn):
                helper.close()  # written to meanwhile: no longer a first import
                helper = None
            listed = _listed(conn, staged.kinds) if options.max_deactivation is not None else {}
            result = merge.MergeResult()
            search_index.begin_marking(conn)
            if FileKind.PERSON in staged.kinds:
                merge.merge_practitioners(conn, imp, now, result)
            if FileKind.MAILBOX in staged.kinds:
                merge.merge_mailboxes(conn, imp, now, result)
            refusal = _too_many_deactivated(result, listed, options.max_deactivation, files)
            if refusal is not None:
                transaction.rollback()  # (first: the journal below writes on its own)
                refused = ImportRefused(refusal)
                _write_refused(log, options, refused, files)
                _journal_refused(engine, options)
                raise refused
            timings["merge"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            if progress:
                progress(Progress("index"))
            documents = fresh_index.install(conn, helper) if helper is not None else None
            if documents is not None:
                result.documents = documents
                result.index = "full"
            else:
                changed = sum(c.added + c.changed + c.deactivated
                              for c in (result.practitioners, result.mailboxes))
                result.index = search_index.refresh_after_import(conn, imp, changed)
                result.documents = int(
                    conn.execute(text("SELECT count(*) FROM directory_doc")).scalar_one()
                )
            timings["index"] = time.perf_counter() - t2
            extra: dict[str, Any] = {
                "lines": sum(f.lines for f in files), "errors": log.errors,
                "warnings": log.warnings,
            }
            conn.execute(
                insert(import_log).values(
                    id=imp, started_at=now, finished_at=datetime.now(UTC),
                    actor=options.actor, files="\n".join(s.label for s in all_sources),
                    summary=merge.summary_json(result, extra),
                )
            )
            if options.journal is not None:
                _journal(options.journal, conn, imp, options.actor)
            if progress:
                progress(Progress("commit"))
            t3 = time.perf_counter()
        timings["commit"] = time.perf_counter() - t3
        if sqlite and options.checkpoint:
            t4 = time.perf_counter()
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(TRUNCATE)"
            )
            timings["checkpoint"] = time.perf_counter() - t4
        res = ImportResult(imp, files, result, log.errors, log.warnings, list(log.first),
                           options.report_path, timings)
        if options.report_path is not None:
            log.write_report(
                options.report_path, f"Directory import report — {now.isoformat()}",
                res.summary_lines(), [str(d) for d in result.disagreements],
            )
        if progress:
            progress(Progress("done"))
        return res
    finally:
        log.close()
        if helper is not None:
            helper.close()
        if conn is not None:
            # The connection carries tuned pragmas, attachments and temporary tables.
            conn.invalidate()
            conn.close()
        work.close()


def _reserve_import_id(conn: Connection) -> int:
    """The id of this import's log row, written once at the end of the transaction.

    On SQLite this is the transaction's first statement: it takes the database's write lock
    (a write statement that changes nothing), and the id is the one SQLite would give,
    ``max + 1``. Writing the row now and updating it at the end would modify one page at
    both ends of a transaction larger than the page cache: the page, spilled to the WAL
    early on, is written again at the commit, and SQLite then recomputes the checksum of
    every WAL frame from that one on (at national size, a pass over the 1.7 GB just
    written). On PostgreSQL imports are already serialised by the advisory lock; the id
    comes from the column's sequence.
    """
    if conn.dialect.name == "sqlite":
        conn.execute(import_log.delete().where(text("0")))
        return int(conn.execute(select(func.coalesce(func.max(import_log.c.id), 0) + 1))
                   .scalar_one())
    return int(conn.execute(
        text("SELECT nextval(pg_get_serial_sequence(:table, 'id'))"), {"table": import_log.name}
    ).scalar_one())


def _refuse_empty(files: list[FileReport]) -> None:
    """Refuse an extract without a single valid line: imported, it would retire every entry
    of its kind (an interrupted download, a file holding only its header)."""
    for f in files:
        if f.lines - f.rejected <= 0:
            raise ImportRefused(Issue(
                f.label, 1, "-",
                f"the extract holds no valid line ({f.lines} read, {f.rejected} rejected): "
                "importing it would deactivate every entry of its kind",
            ))


def _listed(conn: Connection, kinds: set[FileKind]) -> dict[FileKind, int]:
    """How many entries of each kind imported an earlier import lists: those a new extract
    that lacks them deactivates (:mod:`directory.merge`)."""
    tables = {FileKind.PERSON: "practitioner", FileKind.MAILBOX: "directory_mailbox"}
    return {
        kind: int(conn.execute(text(
            f"SELECT count(*) FROM {tables[kind]} "  # noqa: S608 - constant table names
            f"WHERE listed = true AND source = '{SOURCE_IMPORT}'"
        )).scalar_one())
        for kind in kinds
    }


def _too_many_deactivated(
    result: merge.MergeResult, listed: dict[FileKind, int], share: float | None,
    files: list[FileReport],
) -> Issue | None:
    """The refusal of an import that deactivates more than ``share`` of the practitioners
    or mailboxes listed before it (None: within the limit)."""
    if share is None:
        return None
    for kind, what, counts in ((FileKind.PERSON, "practitioners", result.practitioners),
                               (FileKind.MAILBOX, "mailboxes", result.mailboxes)):
        before = listed.get(kind, 0)
        if before and counts.deactivated > share * before:
            label = next((f.label for f in files if f.kind is kind), "-")
            return Issue(
                label, 1, "-",
                f"this extract would deactivate {counts.deactivated} of the {before} "
                f"{what} listed ({counts.deactivated / before:.0%}), more than the "
                f"{share:.0%} allowed: is it complete? (to accept it: --allow-deactivation, "
                "or max_deactivation in [directory])",
            )
    return None


def _file_reports(all_sources: list[Source], staged: staging.Staged) -> list[FileReport]:
    reports = [FileReport(s.label, FileKind.PERSON) for s in all_sources]
    for job, res in zip(staged.jobs, staged.results, strict=True):
        rep = reports[job.source_index]
        rep.kind = job.header.kind
        rep.lines += res.lines
        rep.rejected += res.rejected
        if not rep.encoding or res.encoding == "latin-1":
            rep.encoding = res.encoding
    return reports


def _write_refused(
    log: IssueLog, options: ImportOptions, exc: ImportRefused, files: list[FileReport]
) -> None:
    if options.report_path is None:
        return
    log.write_report(
        options.report_path, "Directory import report — REFUSED: nothing was imported",
        [f"Refused: {exc.issue}", *(f"  {f.label}: {f.lines} lines read" for f in files)], [],
    )


def _journal_refused(engine: Engine, options: ImportOptions) -> None:
    """A refused import changed nothing; the attempt is journaled on its own."""
    from audit.events import Action, AuditEvent, Outcome

    if options.journal is None:
        return
    with engine.begin() as conn:
        options.journal.append(conn, [AuditEvent(
            action=Action.DIRECTORY_IMPORTED, actor=options.actor, protocol="cli",
            outcome=Outcome.REFUSED, reason="import_refused",
        )])


def _journal(journal: Journal, conn: Connection, imp: int, actor: str) -> None:
    from audit.events import Action, AuditEvent

    journal.append(conn, [AuditEvent(
        action=Action.DIRECTORY_IMPORTED, actor=actor, protocol="cli",
        object_ids=(("directory_import", str(imp)),),
    )])


__all__ = ["ImportOptions", "ImportRefused", "ImportResult", "Progress", "SourceError",
           "import_files"]
