"""The search index of a first import, built beside the merge (issue 6, import speed).

An import into an empty directory (no practitioner, no mailbox, no search document: a new
installation, the first national extract) ends with a full rebuild of the search
documents and of the FTS5 index (:func:`directory.search_index.rebuild`). That rebuild
reads the merged tables, so it can only start once the merge is done, and both run on one
core: at national size they are most of the import's time after parsing.

For such an import on SQLite the documents are computed from the *staged* extract instead:
in an empty directory every staged line becomes an active row, so the staged rows say
exactly what the merged tables will hold. A helper process (:class:`Helper`) computes the
documents (:func:`build_documents`), then builds their full-text index
(:func:`build_index`), each into a throw-away SQLite file of the import's working
directory, while the importing process merges on the other core. The import then copies
the documents (while the index is still being built) and the index's shadow tables into
the directory, inside its one transaction (:func:`install`).

The documents are those :func:`directory.search_index.rebuild` would write, byte for byte
and in the same positions (the tests compare both): the same statements' expressions over
the staged rows, the same first-occurrence rules as the merge (a practitioner listed in two
runs of lines keeps its first record; a repeated activity its first line), the same order
of terms (a practitioner's activities by key, its personal mailboxes in file order).
Mailbox documents carry their address; the mailbox's row id, given by the merge, is looked
up when they are copied.

The FTS5 index is built by a contentless table with the directory's tokenizer and options;
its shadow tables (``_data``, ``_idx``) hold the same index an external-content table over
the same documents would hold, so they are copied as they are.
"""

# ruff: noqa: S608 - SQL is assembled from constant table names; every value is a bound
# parameter.

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import traceback
from multiprocessing.connection import Connection as PipeEnd
from pathlib import Path

from sqlalchemy import Connection

from directory import search_index as si
from directory import stage_worker as sw
from directory import staging
from directory.tables import DOC_MAILBOX, DOC_PRACTITIONER, FTS_TABLE

#: The directory's full-text table, contentless (migration ``directory_0001``: the same
#: tokenizer and options, without the external content).
_FTS_DEFINITION = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(terms, content='', tokenize='ascii', "
    "prefix='3', detail='none', columnsize=0)"
)
#: Page caches of the helper's connection (KiB): its file, then its temporary tables.
#: (It runs beside the importing process: the two stay under the issue's 300 MiB.)
CACHE_KIB = 16 * 1024
TEMP_CACHE_KIB = 4 * 1024
log = logging.getLogger(__name__)
#: Schema names of the helper's two files.
DOCS = "fresh_documents"
INDEX = "fresh_index"
#: Below this size of extracts (bytes) the helper is not worth starting (it takes a second
#: or two to start, the rebuild of 250,000 lines about as long).
MIN_BYTES = 64 * 1024 * 1024


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # throw-away files
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    db.execute("PRAGMA temp_store=FILE")
    db.execute(f"PRAGMA temp.cache_size=-{TEMP_CACHE_KIB}")
    return db


def build_documents(path: Path, jobs: list[sw.Job]) -> int:
    """Compute the documents of the staged rows into the file ``path`` (table ``docs``);
    return how many."""
    db = _open(path)
    try:
        staging.attach_views(db, jobs, empty=True)
        db.execute("BEGIN")
        # the merge's rules: a practitioner's first record, an activity's first line
        db.execute("CREATE TEMP TABLE people (pid INTEGER PRIMARY KEY, national_id TEXT "
                   "NOT NULL, name_terms TEXT NOT NULL)")
        db.execute(f"INSERT INTO people SELECT pid, national_id, name_terms FROM "
                   f"{staging.PERSON} WHERE person_raw IS NOT NULL ON CONFLICT DO NOTHING")
        db.execute("CREATE TEMP TABLE acts (pid INTEGER NOT NULL, act_key INTEGER NOT NULL, "
                   "terms TEXT NOT NULL, PRIMARY KEY (pid, act_key)) WITHOUT ROWID")
        db.execute(f"INSERT INTO acts SELECT pid, act_key, terms FROM {staging.PERSON} "
                   "WHERE true ON CONFLICT DO NOTHING")
        # a practitioner's terms: its activities by key (the order of the activity index
        # the rebuild reads them through), its personal mailboxes in file order (row ids)
        db.execute("CREATE TEMP TABLE act_terms (pid INTEGER PRIMARY KEY, t TEXT NOT NULL)")
        db.execute("INSERT INTO act_terms SELECT pid, group_concat(terms, ' ') FROM acts "
                   "GROUP BY pid")
        db.execute("CREATE TEMP TABLE box_terms (pid INTEGER PRIMARY KEY, t TEXT NOT NULL)")
        db.execute(f"""
            INSERT INTO box_terms SELECT pid, group_concat(terms, ' ') FROM (
                SELECT pid, terms FROM {staging.MAILBOX}
                WHERE mailbox_type = 'PER' AND pid IS NOT NULL ORDER BY pid, seq)
            GROUP BY pid
        """)
        # ``n``: the document's rank in alphabetical order (its position is ``n`` × the
        # gap), given by the insertion order (the rowid of an empty table counts from 1);
        # the same as ``row_number() OVER (ORDER BY sort_key)``, which would buffer every
        # document once more in a temporary table
        db.execute("CREATE TABLE docs (n INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
                   "ref_id INTEGER, address TEXT, sort_key TEXT NOT NULL, terms TEXT NOT NULL)")
        db.execute(
            f"""
            INSERT INTO docs (kind, ref_id, address, sort_key, terms)
            SELECT d.kind, d.ref_id, d.address, d.sort_key, d.terms
            FROM (
                SELECT '{DOC_PRACTITIONER}' AS kind, p.pid AS ref_id, NULL AS address,
                       {si.practitioner_sort_key('p.name_terms', 'p.national_id')} AS sort_key,
                       {si.practitioner_terms('p.name_terms', 'p.national_id', 'a.t', 'b.t')}
                         AS terms
                FROM people p LEFT JOIN act_terms a ON a.pid = p.pid
                     LEFT JOIN box_terms b ON b.pid = p.pid
                UNION ALL
                SELECT '{DOC_MAILBOX}', NULL, m.address,
                       {si.mailbox_sort_key('m.name_terms', 'm.address')},
                       {si.mailbox_terms('m.name_terms', 'm.terms')}
                FROM {staging.MAILBOX} m
                WHERE NOT (m.mailbox_type = 'PER' AND m.pid IS NOT NULL
                           AND EXISTS (SELECT 1 FROM people p2 WHERE p2.pid = m.pid))
            ) d
            ORDER BY d.sort_key
            """,
            {"sep": si.SORT_SEPARATOR},
        )
        count = int(db.execute("SELECT count(*) FROM docs").fetchone()[0])
        db.execute("COMMIT")
        return count
    finally:
        db.close()


def build_index(path: Path, documents: Path) -> None:
    """Index the documents of the file ``documents`` into the file ``path`` (FTS5 shadow
    tables ``directory_fts_data`` and ``_idx``), merged into one segment."""
    db = _open(path)
    try:
        db.execute(f"ATTACH DATABASE ? AS {DOCS}", (str(documents),))
        db.execute("BEGIN")
        db.execute(_FTS_DEFINITION)
        si.fts_bulk_load(db.execute, f"INSERT INTO {FTS_TABLE}(rowid, terms) "
                                     f"SELECT n * {si.GAP}, terms FROM {DOCS}.docs ORDER BY n")
        db.execute("COMMIT")
    finally:
        db.close()


class HelperError(Exception):
    """The helper failed (the text is its traceback) or died."""


def _work(results: PipeEnd, documents: Path, index: Path, jobs: list[sw.Job]) -> None:
    """The helper process: the documents, then their index; each outcome is sent as
    ``(True, value)`` or ``(False, traceback)``, and the process ends after the index (its
    memory is given back before the import's own sort of the documents)."""
    sw.init_worker(None)
    try:
        results.send((True, build_documents(documents, jobs)))
        build_index(index, documents)
        results.send((True, None))
    except Exception:
        results.send((False, traceback.format_exc()))
    finally:
        results.close()


class Helper:
    """The documents, then their index, built in a process of their own (which dies with
    the importing one), each into its own file: the importing process copies the
    documents while the index is being built."""

    def __init__(self, workdir: Path, jobs: list[sw.Job]) -> None:
        self.documents_path = workdir / "fresh-documents.db"
        self.index_path = workdir / "fresh-index.db"
        context = multiprocessing.get_context("spawn")
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_work, args=(sender, self.documents_path, self.index_path, jobs),
            name="directory-index", daemon=True,
        )
        self._process.start()
        sender.close()

    def _outcome(self) -> object:
        try:
            ok, value = self._results.recv()
        except EOFError:
            self._process.join()
            raise HelperError(f"the helper died (exit code {self._process.exitcode})") from None
        if not ok:
            raise HelperError(value)
        return value

    def documents(self) -> int:
        """Wait for the documents; raise :class:`HelperError` if the helper failed."""
        count = self._outcome()
        assert isinstance(count, int)
        return count

    def index(self) -> None:
        """Wait for the index and for the helper to end; raise :class:`HelperError` if it
        failed."""
        self._outcome()
        self._process.join()

    @property
    def exitcode(self) -> int | None:
        """The helper's exit code once it has ended (None while it runs)."""
        return self._process.exitcode

    def close(self) -> None:
        """Stop the helper (killed if it is still building) and wait for it."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._results.close()


def start(workdir: Path, staged: staging.Staged) -> Helper:
    return Helper(workdir, staged.jobs)


def directory_empty(conn: Connection) -> bool:
    """No practitioner, no mailbox and no search document."""
    return not conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM practitioner) OR EXISTS (SELECT 1 FROM directory_mailbox)"
        " OR EXISTS (SELECT 1 FROM directory_doc)"
    ).scalar()


def attach(conn: Connection, helper: Helper) -> None:
    """Attach the helper's files to the import's connection (before its transaction: SQLite
    attaches no database inside one)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute(f"ATTACH DATABASE ? AS {DOCS}", (str(helper.documents_path),))
    raw.execute(f"ATTACH DATABASE ? AS {INDEX}", (str(helper.index_path),))


def install(conn: Connection, helper: Helper) -> int | None:
    """Copy the documents, then their index, into the (empty) directory, in the import's
    transaction, after the merge; return the number of documents.

    Should the helper have failed on the documents, nothing is written and None is
    returned: the import rebuilds them after the merge, as it does without a helper.
    Should it fail on the index, the documents copied are indexed here instead. Either way
    a warning says why.

    The helper's index is not written through the FTS5 table: its shadow tables are
    replaced whole (the directory had no document, so the index they replace is empty).
    The documents' ref index is built last, once the helper has ended, so that its sort's
    memory and the helper's never add up.
    """
    try:
        count = helper.documents()
    except Exception:  # nothing copied yet: the rebuild gives the same index, only later
        log.warning("building the search index beside the merge failed; rebuilding it",
                    exc_info=True)
        return None
    conn.exec_driver_sql(f"DROP INDEX {si.REF_INDEX}")  # built afterwards, as a rebuild does
    conn.exec_driver_sql(f"""
        INSERT INTO directory_doc (pos, kind, ref_id, sort_key, terms)
        SELECT d.n * {si.GAP}, d.kind,
               CASE WHEN d.kind = '{DOC_MAILBOX}'
                    THEN (SELECT m.id FROM directory_mailbox m WHERE m.address = d.address)
                    ELSE d.ref_id END,
               d.sort_key, d.terms
        FROM {DOCS}.docs d ORDER BY d.n
    """)
    try:
        helper.index()
    except Exception:  # the documents are in place: index them here, as a rebuild does
        log.warning("indexing the documents beside the merge failed; indexing them here",
                    exc_info=True)
        si.fts_rebuild(conn)
    else:
        for table, cols in ((f"{FTS_TABLE}_data", "id, block"),
                            (f"{FTS_TABLE}_idx", "segid, term, pgno")):
            conn.exec_driver_sql(f"DELETE FROM {table}")
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {INDEX}.{table}"
            )
    conn.exec_driver_sql(si.CREATE_REF_INDEX)  # the helper has ended (see above)
    return count
