"""Staging: read and validate the extracts in parallel, before the merge transaction.

The files are cut into byte ranges (on line — and for practitioner files, practitioner —
boundaries) and each range is parsed by a job (:mod:`directory.stage_worker`) into a private
SQLite file, in worker processes when there are several ranges. Nothing here touches the
directory database, so on SQLite the write lock is only taken by the merge.

The merge then reads two relations, ``directory_stage_person`` and
``directory_stage_mailbox`` (columns: :data:`stage_worker.PERSON_COLS` /
:data:`stage_worker.MAILBOX_COLS`):

* on SQLite, temporary views over the staging files, attached to the import connection
  (no copy at all);
* on PostgreSQL, temporary tables filled from the staging files with ``COPY``.
"""

# ruff: noqa: S608 - SQL is assembled from constant table names and dialect fragments;
# every value is a bound parameter.

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, bindparam, text

from directory import stage_worker as sw
from directory.formats import FileKind, Header, HeaderError, parse_header
from directory.issues import ImportRefused, Issue, Severity
from directory.reader import BOM, LATIN1, UTF8, Source

PERSON = "directory_stage_person"
MAILBOX = "directory_stage_mailbox"
#: SQLite attaches at most 10 databases by default: one per job.
MAX_JOBS = 9
#: Parsing cost of a byte of each kind of file, relative (measured: a mailbox line costs
#: about as much as a person-activity line, and is half as long).
PARSE_COST = {FileKind.PERSON: 1, FileKind.MAILBOX: 2}
#: How much of a file's beginning decides its encoding (bytes, and non-ASCII lines).
SNIFF_BYTES = 1 << 20
SNIFF_LINES = 200


@dataclass(frozen=True)
class StageOptions:
    lenient: bool
    strict: bool
    workdir: Path
    #: Worker processes (1: parse in the importing process).
    workers: int = max(1, min(os.cpu_count() or 1, 4))
    #: Ranges are no smaller than this (bytes); smaller files are one job.
    min_chunk: int = 32 * 1024 * 1024


@dataclass
class Staged:
    jobs: list[sw.Job]
    results: list[sw.JobResult]
    kinds: set[FileKind] = field(default_factory=set)
    #: Line number (in its file) of each job's first line.
    first_line: dict[int, int] = field(default_factory=dict)

    def where(self, seq: int) -> tuple[sw.Job, int]:
        """The job and the line number in its file of a staged row."""
        index = seq >> sw.SEQ_SHIFT
        job = next(j for j in self.jobs if j.index == index)
        return job, self.first_line[index] + (seq & ((1 << sw.SEQ_SHIFT) - 1)) - 1


def _read_header(source: Source) -> tuple[Header, int, bool]:
    """The header, its length in bytes, and whether the file starts with a BOM."""
    with source.open() as stream:
        first = stream.readline()
    if not first.strip():
        raise ImportRefused(Issue(source.label, 1, "-", "empty file: no header line"))
    bom = first.startswith(BOM)
    body = first[len(BOM):] if bom else first
    try:
        text_ = body.decode("utf-8")
    except UnicodeDecodeError:
        text_ = body.decode("latin-1")
    try:
        return parse_header(text_), len(first), bom
    except HeaderError as exc:
        raise ImportRefused(Issue(source.label, 1, exc.column, str(exc))) from None


def _sniff_encoding(source: Source, bom: bool) -> str | None:
    """The encoding of a whole file, decided once from its beginning (DOMAIN.md §4).

    Every range of the file is then decoded the same way: a UTF-8 file whose later range
    happens to start with a corrupt line is not taken for Latin-1 there. The non-ASCII lines
    of the first :data:`SNIFF_BYTES` vote (the header has accents, so there always are
    some); None when they are all ASCII (each range then decides on its first non-ASCII
    line, as :class:`directory.reader.RangeReader` does alone).
    """
    if bom:
        return UTF8
    valid = invalid = 0
    read = 0
    with source.open() as stream:
        for raw in stream:
            read += len(raw)
            if not raw.isascii():
                try:
                    raw.decode(UTF8)
                except UnicodeDecodeError:
                    invalid += 1
                else:
                    valid += 1
                if valid + invalid >= SNIFF_LINES:
                    break
            if read >= SNIFF_BYTES:
                break
    if valid + invalid == 0:
        return None
    return UTF8 if valid >= invalid else LATIN1


def _boundaries(path: Path, start: int, end: int, n: int, header: Header) -> list[int]:
    """Cut [start, end) into about ``n`` ranges on line (and practitioner) boundaries."""
    cuts = [start]
    nat_pos = header.positions[2] if header.kind is FileKind.PERSON else None
    with path.open("rb") as f:
        for k in range(1, n):
            f.seek(start + (end - start) * k // n)
            f.readline()  # finish the line the guess fell into
            pos = f.tell()
            if nat_pos is not None:
                line = f.readline()
                nat = line.split(b"|")[nat_pos] if line else b""
                pos += len(line)
                while True:
                    nxt = f.readline()
                    if not nxt or nxt.split(b"|")[nat_pos] != nat:
                        break
                    pos += len(nxt)
            if cuts[-1] < pos < end:
                cuts.append(pos)
    return cuts


def plan(sources: list[Source], options: StageOptions) -> list[sw.Job]:
    """The jobs for all sources: large plain files cut in ranges, zip members whole."""
    if len(sources) > MAX_JOBS:
        raise ImportRefused(Issue(sources[MAX_JOBS].label, 0, "-",
                                  f"too many files in one import (at most {MAX_JOBS})"))
    headers = [_read_header(s) for s in sources]
    encodings = [_sniff_encoding(s, bom) for s, (_, _, bom) in zip(sources, headers, strict=True)]
    costs = [s.size * PARSE_COST[h.kind] for s, (h, _, _) in zip(sources, headers, strict=True)]
    # about four jobs a worker, of about the same cost: the last ones to finish run beside
    # others most of the time
    target = max(1, sum(costs) // (4 * options.workers))
    budget = MAX_JOBS - len(sources)
    jobs: list[sw.Job] = []
    for si, (source, (header, header_len, bom)) in enumerate(zip(sources, headers, strict=True)):
        pieces = 1
        if source.member is None and options.workers > 1 and source.size > options.min_chunk:
            pieces = max(1, min(1 + budget, round(costs[si] / target),
                                source.size // options.min_chunk))
            budget -= pieces - 1
        if pieces > 1:
            cuts = _boundaries(source.path, header_len, source.size, pieces, header)
        else:
            cuts = [header_len]
        for ci, start in enumerate(cuts):
            end = cuts[ci + 1] if ci + 1 < len(cuts) else None
            idx = len(jobs)
            jobs.append(sw.Job(
                index=idx, source_index=si, source=source, header=header, start=start,
                end=end, bom=bom, encoding=encodings[si],
                lenient=options.lenient, strict=options.strict,
                db_path=options.workdir / f"stage-{idx}.db",
                issues_path=options.workdir / f"stage-{idx}.issues",
                skip_header=source.member is not None,
            ))
    return jobs


def run(
    jobs: list[sw.Job], options: StageOptions,
    progress: Callable[[int, int], None] | None = None,
) -> list[sw.JobResult]:
    """Run the jobs (in worker processes when there are several); report bytes done/total.

    Returns the result of every job that ran, in job order (each result names its job).
    When a job refuses (strict mode), the jobs *after* it are cancelled but those before it
    still run: they may hold an earlier error, and the import must name the first error in
    file order whatever the scheduling, as a single reader would.
    """
    total = sum((j.end if j.end is not None else j.source.size) - j.start for j in jobs)
    if len(jobs) == 1 or options.workers <= 1:
        results = []
        counters = [0] * len(jobs)
        for job in jobs:
            results.append(sw.run(job, counters))
            if progress:
                progress(sum(counters), total)
            if results[-1].refused:
                break
        return results
    ctx = multiprocessing.get_context("spawn")
    shared = ctx.Array("q", len(jobs), lock=False)
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=min(options.workers, len(jobs)), mp_context=ctx,
        initializer=sw.init_worker, initargs=(shared,),
    )
    try:
        # costliest first: the last job to start should be a short one
        order = sorted(jobs, key=lambda j: -((j.end or j.source.size) - j.start)
                       * PARSE_COST[j.header.kind])
        futures = {pool.submit(sw.run_in_worker, j): j.index for j in order}
        pending = set(futures)
        done_results: dict[int, sw.JobResult] = {}
        refused_at: int | None = None
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.25)
            for fut in done:
                res = fut.result()
                done_results[res.index] = res
                if res.refused and (refused_at is None or res.index < refused_at):
                    refused_at = res.index
            if refused_at is not None:
                for fut in pending:
                    if futures[fut] > refused_at:
                        fut.cancel()
                pending = {p for p in pending if not p.cancelled()}
            if progress:
                progress(sum(shared), total)
        return [done_results[i] for i in sorted(done_results)]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def collect(jobs: list[sw.Job], results: list[sw.JobResult],
            on_issue: Callable[[Issue], None]) -> Staged:
    """Renumber the jobs' problems into file line numbers and pass them on, in file order.

    ``results`` are paired with their jobs by index (any order; the jobs after a refusing
    one may be missing: :func:`run` cancels them). Header warnings (unknown columns) come
    first for each file. On the first job that refused, raise :class:`ImportRefused` with
    its error (``on_issue`` normally raises it first). The :class:`Staged` result holds
    the jobs that ran.
    """
    by_index = {r.index: r for r in results}
    staged = Staged([], [])
    next_line: dict[int, int] = {}
    for job in jobs:
        if job.source_index not in next_line:
            next_line[job.source_index] = 2
            for column in job.header.unknown:
                on_issue(Issue(job.source.label, 1, column,
                               "unknown column, its values are ignored",
                               severity=Severity.WARNING))
        first = next_line[job.source_index]
        res = by_index.get(job.index)
        if res is None:  # cancelled: only jobs after a refusing one are (see run())
            break
        staged.jobs.append(job)
        staged.results.append(res)
        staged.kinds.add(job.header.kind)
        staged.first_line[job.index] = first
        next_line[job.source_index] = first + res.physical_lines
        refusal: Issue | None = None
        if job.issues_path.exists():
            for issue in _read_issues(job, first):
                if issue.severity is Severity.ERROR:
                    refusal = issue
                on_issue(issue)
        if res.refused:
            if refusal is None:  # pragma: no cover - a refusing job always wrote its error
                refusal = Issue(job.source.label, first, "-", "import refused")
            raise ImportRefused(refusal)
    return staged


def _read_issues(job: sw.Job, first_line: int) -> Iterator[Issue]:
    with job.issues_path.open(encoding="utf-8") as f:
        for line in f:
            rel, severity, column, message, value = line.rstrip("\n").split("\t")
            yield Issue(job.source.label, first_line + int(rel) - 1, sw.unescape(column),
                        sw.unescape(message), sw.unescape(value), Severity(severity))


def expose(conn: Connection, staged: Staged) -> None:
    """Make the staged rows readable as ``directory_stage_person`` / ``_mailbox``."""
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        assert raw is not None
        attach_views(raw, staged.jobs)
        return
    person = [j for j in staged.jobs if j.header.kind is FileKind.PERSON]
    mailbox = [j for j in staged.jobs if j.header.kind is FileKind.MAILBOX]
    with conn.begin():
        for name, table, cols, group, kind in (
            (PERSON, sw.PERSON_TABLE, sw.PERSON_COLS, person, FileKind.PERSON),
            (MAILBOX, sw.MAILBOX_TABLE, sw.MAILBOX_COLS, mailbox, FileKind.MAILBOX),
        ):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            if kind is FileKind.PERSON:
                conn.exec_driver_sql(
                    f"CREATE TEMP TABLE {name} (seq BIGINT NOT NULL, pid BIGINT NOT NULL, "
                    "national_id TEXT, person_raw TEXT, name_terms TEXT, act_key BIGINT NOT NULL,"
                    " act_raw TEXT NOT NULL, terms TEXT NOT NULL)"
                )
            else:
                conn.exec_driver_sql(
                    f"CREATE TEMP TABLE {name} (seq BIGINT NOT NULL, address TEXT NOT NULL, "
                    "mailbox_type TEXT NOT NULL, pid BIGINT, national_id TEXT, raw TEXT NOT NULL,"
                    " name_terms TEXT NOT NULL, terms TEXT NOT NULL)"
                )
            pg = conn.connection.driver_connection
            assert pg is not None
            for job in group:
                src = sqlite3.connect(job.db_path)
                try:
                    with pg.cursor() as cur, cur.copy(
                        f"COPY {name} ({', '.join(cols)}) FROM STDIN"
                    ) as copy:
                        for row in src.execute(f"SELECT * FROM {table}"):
                            copy.write_row(row)
                finally:
                    src.close()
            conn.exec_driver_sql(f"ANALYZE {name}")


def attach_views(raw: sqlite3.Connection, jobs: list[sw.Job], *, empty: bool = False) -> None:
    """On a SQLite connection: attach the jobs' staging files and create the temporary views
    ``directory_stage_person`` / ``_mailbox`` over them (no view for a kind no job holds,
    unless ``empty``: then an empty one)."""
    for job in jobs:
        raw.execute(f"ATTACH DATABASE ? AS dir_stage_{job.index}", (str(job.db_path),))
    for name, table, kind in ((PERSON, sw.PERSON_TABLE, FileKind.PERSON),
                              (MAILBOX, sw.MAILBOX_TABLE, FileKind.MAILBOX)):
        group = [j for j in jobs if j.header.kind is kind]
        raw.execute(f"DROP VIEW IF EXISTS temp.{name}")
        if group:
            union = " UNION ALL ".join(f"SELECT * FROM dir_stage_{j.index}.{table}" for j in group)
            raw.execute(f"CREATE TEMP VIEW {name} AS {union}")
        elif empty:
            cols = sw.PERSON_COLS if kind is FileKind.PERSON else sw.MAILBOX_COLS
            raw.execute(f"CREATE TEMP VIEW {name} AS SELECT "
                        + ", ".join(f"NULL AS {c}" for c in cols) + " WHERE false")


def delete_rows(conn: Connection, staged: Staged, kind: FileKind, seqs: list[int]) -> None:
    """Remove staged rows (repeated mailbox addresses) before the merge."""
    if not seqs:
        return
    if conn.dialect.name == "sqlite":
        table = sw.PERSON_TABLE if kind is FileKind.PERSON else sw.MAILBOX_TABLE
        by_job: dict[int, list[int]] = {}
        for s in seqs:
            by_job.setdefault(s >> sw.SEQ_SHIFT, []).append(s)
        raw = conn.connection.driver_connection
        assert raw is not None
        for idx, group in by_job.items():
            raw.executemany(f"DELETE FROM dir_stage_{idx}.{table} WHERE seq = ?",
                            [(s,) for s in group])
        return
    name = PERSON if kind is FileKind.PERSON else MAILBOX
    with conn.begin():
        conn.execute(
            text(f"DELETE FROM {name} WHERE seq IN :seqs").bindparams(
                bindparam("seqs", expanding=True)),
            {"seqs": seqs},
        )

