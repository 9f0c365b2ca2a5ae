"""The search documents and their full-text index (SQLite FTS5 / PostgreSQL tsvector).

One document per search result: each active practitioner (its names, identifiers, the
terms of its active activities and of its published personal mailboxes), and each active
published mailbox that is not a personal mailbox of a known practitioner (organisational,
applicative and practice mailboxes, or a PER mailbox whose practitioner is not in the
directory). Red-listed mailboxes are in no document, so search never shows them.

A document's ``pos`` is its alphabetical rank times :data:`GAP`. The FTS5 table uses it as its
rowid and PostgreSQL orders by it, so the first page of a query comes out of the index in
order, without sorting every match. A full rebuild renumbers everything; afterwards, changed
documents are re-inserted between their alphabetical neighbours (the new documents that fall
into the same gap share it evenly). When a gap is exhausted the index is renumbered.

Both backends use the same positions, computed by the same statements, so results and their
order are identical.
"""

# ruff: noqa: S608 - SQL is assembled from constant table names and dialect fragments;
# every value is a bound parameter.

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import Connection, text

from directory.tables import DOC_MAILBOX, DOC_PRACTITIONER, FTS_TABLE

#: Distance between consecutive positions after a rebuild (room for 16 halvings).
GAP = 1 << 16
#: Separates the name terms from the unique tie-breaker in a sort key (sorts before " ").
SORT_SEPARATOR = "\x01"
#: Rebuild everything rather than patch when this share of documents changed.
FULL_REBUILD_SHARE = 0.2

AFFECTED = "directory_doc_affected"
#: The documents' (kind, ref_id) index (:data:`directory.tables.doc`): a full load drops it
#: and builds it afterwards, rather than fill it in random order.
REF_INDEX = "uq_directory_doc_ref"
CREATE_REF_INDEX = f"CREATE UNIQUE INDEX {REF_INDEX} ON directory_doc (kind, ref_id)"
#: FTS5's own defaults, for incremental updates (https://sqlite.org/fts5.html §6).
FTS_AUTOMERGE = 4
FTS_CRISISMERGE = 16
#: During a full rebuild: segments a level may hold before FTS5 must merge them (measured
#: on the national extract: 16 and 8 slower, 200 and 1000 no faster).
FTS_BULK_CRISISMERGE = 64


class _Renumber(Exception):
    """No free position between two neighbours: renumber the whole index."""


def _agg(conn: Connection, expr: str) -> str:
    if conn.dialect.name == "postgresql":
        return f"string_agg({expr}, ' ')"
    return f"group_concat({expr}, ' ')"


# A document's sort key and terms, as SQL expressions over its parts (also computed from the
# staged rows by :mod:`directory.fresh_index`: one definition for both). The sort key's
# separator is the bound parameter ``:sep`` (:data:`SORT_SEPARATOR`).


def practitioner_sort_key(name_terms: str, national_id: str) -> str:
    return f"{name_terms} || :sep || {national_id}"


def practitioner_terms(name_terms: str, national_id: str, activities: str, mailboxes: str) -> str:
    """Its names, its identifiers (national and RPPS/ADELI), then the terms of its active
    activities and of its published personal mailboxes (``activities``/``mailboxes``: each
    NULL when there is none)."""
    return (f"ltrim({name_terms} || ' 5n' || {national_id} || ' 5n' || substr({national_id}, 2)"
            f" || coalesce(' ' || {activities}, '') || coalesce(' ' || {mailboxes}, ''))")


def mailbox_sort_key(name_terms: str, address: str) -> str:
    return f"{name_terms} || :sep || {address}"


def mailbox_terms(name_terms: str, terms: str) -> str:
    return f"ltrim({name_terms} || ' ' || {terms})"


def _practitioner_docs(conn: Connection, where: str) -> str:
    """SELECT (kind, ref_id, sort_key, terms) of practitioner documents."""
    activities = (f"(SELECT {_agg(conn, 'a.terms')} FROM practitioner_activity a "
                  "WHERE a.practitioner_id = p.id AND a.active = true)")
    mailboxes = (f"(SELECT {_agg(conn, 'm.terms')} FROM directory_mailbox m "
                 "WHERE m.practitioner_id = p.id AND m.mailbox_type = 'PER' "
                 "AND m.active = true AND m.red_list = false)")
    return f"""
        SELECT '{DOC_PRACTITIONER}' AS kind, p.id AS ref_id,
               {practitioner_sort_key('p.name_terms', 'p.national_id')} AS sort_key,
               {practitioner_terms('p.name_terms', 'p.national_id', activities, mailboxes)}
                 AS terms
        FROM practitioner p
        WHERE p.active = true {where}
    """


def _mailbox_docs(where: str) -> str:
    return f"""
        SELECT '{DOC_MAILBOX}' AS kind, m.id AS ref_id,
               {mailbox_sort_key('m.name_terms', 'm.address')} AS sort_key,
               {mailbox_terms('m.name_terms', 'm.terms')} AS terms
        FROM directory_mailbox m
        WHERE m.active = true AND m.red_list = false
          AND NOT (m.mailbox_type = 'PER' AND m.practitioner_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM practitioner p2 WHERE p2.id = m.practitioner_id))
          {where}
    """


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _by_key(conn: Connection) -> str:
    """Ordering by sort key, byte by byte on both backends (as ``directory_doc``'s index
    compares them: ``BinaryText``), whatever PostgreSQL's default collation."""
    return "sort_key" if _is_sqlite(conn) else 'sort_key COLLATE "C"'


def rebuild(conn: Connection) -> int:
    """Renumber and re-index every document; return how many there are."""
    sqlite = _is_sqlite(conn)
    if sqlite:
        _fts_command(conn, "delete-all")
        # rows arrive in sort-key order: that index grows at its end, but this one would
        # be filled in random order; building it afterwards is cheaper (DDL is transactional
        # on SQLite; on PostgreSQL dropping it would block concurrent searches)
        conn.exec_driver_sql(f"DROP INDEX {REF_INDEX}")
    conn.execute(text("DELETE FROM directory_doc"))
    conn.execute(
        text(f"""
            INSERT INTO directory_doc (pos, kind, ref_id, sort_key, terms)
            SELECT row_number() OVER (ORDER BY d.{_by_key(conn)}) * :gap,
                   d.kind, d.ref_id, d.sort_key, d.terms
            FROM ({_practitioner_docs(conn, '')} UNION ALL {_mailbox_docs('')}) d
        """),
        {"sep": SORT_SEPARATOR, "gap": GAP},
    )
    if sqlite:
        conn.exec_driver_sql(CREATE_REF_INDEX)
        fts_rebuild(conn)
    return int(conn.execute(text("SELECT count(*) FROM directory_doc")).scalar_one())


def fts_command(command: str, value: int | None = None) -> str:
    """The SQL of an FTS5 special command on the directory's full-text table."""
    if value is None:
        return f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('{command}')"
    return f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('{command}', {int(value)})"


def _fts_command(conn: Connection, command: str, value: int | None = None) -> None:
    conn.exec_driver_sql(fts_command(command, value))


def fts_bulk_load(execute: Callable[[str], object], fill: str) -> None:
    """Fill the FTS5 index with the statement ``fill``, then merge it into one segment.

    FTS5 writes its pending terms as a new segment every megabyte or so and, by default,
    merges segments as it goes (``automerge`` 4, ``crisismerge`` 16), rewriting the same
    index several times during a national import. Flushing without incremental merges and
    merging once at the end (``optimize``) writes it fewer times: 1.5 to 2 s less for the
    national extract, commit included, and one segment is the fastest to query. The
    defaults are put back for the small updates that follow (a delta's patch, an admin's
    edit). ``execute`` runs one statement (on whichever connection holds the index).
    """
    execute(fts_command("automerge", 0))
    execute(fts_command("crisismerge", FTS_BULK_CRISISMERGE))
    execute(fill)
    execute(fts_command("optimize"))
    execute(fts_command("automerge", FTS_AUTOMERGE))
    execute(fts_command("crisismerge", FTS_CRISISMERGE))


def fts_rebuild(conn: Connection) -> None:
    """Index every document (SQLite FTS5), as :func:`fts_bulk_load` does."""
    fts_bulk_load(conn.exec_driver_sql, fts_command("rebuild"))


def _create_affected(conn: Connection) -> None:
    if _is_sqlite(conn):
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {AFFECTED} "
            "(kind TEXT NOT NULL, ref_id INTEGER NOT NULL, PRIMARY KEY (kind, ref_id))"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {AFFECTED} "
            "(kind TEXT NOT NULL, ref_id BIGINT NOT NULL, PRIMARY KEY (kind, ref_id))"
        )
    conn.exec_driver_sql(f"DELETE FROM {AFFECTED}")


def _insert_ignore(conn: Connection, select_sql: str, params: Mapping[str, object]) -> None:
    conn.execute(
        text(f"INSERT INTO {AFFECTED} (kind, ref_id) {select_sql} ON CONFLICT DO NOTHING"),
        params,
    )


def begin_marking(conn: Connection) -> None:
    """Start collecting the documents to refresh (a temporary table of this connection)."""
    _create_affected(conn)


def mark_import(conn: Connection, imp: int) -> int:
    """Collect the documents an import may have changed; return how many marked in all."""
    p, m = DOC_PRACTITIONER, DOC_MAILBOX
    params = {"imp": imp}
    _insert_ignore(
        conn, f"SELECT '{p}', id FROM practitioner WHERE changed_import = :imp", params
    )
    _insert_ignore(
        conn,
        f"SELECT DISTINCT '{p}', practitioner_id FROM directory_mailbox "
        "WHERE changed_import = :imp AND practitioner_id IS NOT NULL",
        params,
    )
    _insert_ignore(
        conn, f"SELECT '{m}', id FROM directory_mailbox WHERE changed_import = :imp", params
    )
    _insert_ignore(
        conn,
        f"SELECT '{m}', m.id FROM directory_mailbox m JOIN practitioner p "
        "ON p.id = m.practitioner_id WHERE p.created_import = :imp",
        params,
    )
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {AFFECTED}").scalar_one())


def mark(
    conn: Connection, practitioners: Iterable[int] = (), mailboxes: Iterable[int] = ()
) -> None:
    """Collect documents to refresh (after :func:`begin_marking`)."""
    rows = [{"k": DOC_PRACTITIONER, "r": r} for r in set(practitioners)]
    rows += [{"k": DOC_MAILBOX, "r": r} for r in set(mailboxes)]
    if rows:
        conn.execute(
            text(f"INSERT INTO {AFFECTED} (kind, ref_id) VALUES (:k, :r) ON CONFLICT DO NOTHING"),
            rows,
        )


def refresh_marked(conn: Connection, *, force_full: bool = False) -> str:
    """Bring the marked documents up to date; return "full", "incremental" or "none"."""
    affected = int(conn.exec_driver_sql(f"SELECT count(*) FROM {AFFECTED}").scalar_one())
    total = int(conn.execute(text("SELECT count(*) FROM directory_doc")).scalar_one())
    if force_full or (affected and affected >= FULL_REBUILD_SHARE * max(total, 1)):
        rebuild(conn)
        return "full"
    if not affected:
        return "none"
    try:
        _patch(conn)
    except _Renumber:
        rebuild(conn)
        return "full"
    return "incremental"


def refresh_after_import(conn: Connection, imp: int, changed: int) -> str:
    """Bring the documents up to date after an import that ``changed`` that many entries.

    When the import changed at least :data:`FULL_REBUILD_SHARE` of the documents (a first
    import), everything is rebuilt at once without first collecting what changed.
    """
    total = int(conn.execute(text("SELECT count(*) FROM directory_doc")).scalar_one())
    if changed >= FULL_REBUILD_SHARE * max(total, 1):
        rebuild(conn)
        return "full"
    mark_import(conn, imp)
    how = refresh_marked(conn)
    if how == "incremental" and _is_sqlite(conn) and _fts_segments(conn) > 1:
        # A delta patches thousands of documents, which FTS5 writes as small segments
        # beside the large one; every query then looks each token up in each segment (a
        # national delta left 8, and name searches took twice as long). Merged back into
        # one, as after a full rebuild (a few seconds at national size).
        _fts_command(conn, "optimize")
    return how


def _fts_segments(conn: Connection) -> int:
    """How many segments the FTS5 index has (each has rows in its ``_idx`` table)."""
    return int(conn.exec_driver_sql(
        f"SELECT count(DISTINCT segid) FROM {FTS_TABLE}_idx").scalar_one())


NEW = "directory_doc_new"
PLACED = "directory_doc_placed"


def _patch(conn: Connection) -> None:
    """Replace the documents of everything marked; the new ones slot into the gaps.

    Set-based: a document identical to its old one stays where it is (nothing to re-index);
    the new documents falling between the same two neighbours share that gap evenly; when a
    gap is too narrow for them, :class:`_Renumber`.
    """
    sqlite = _is_sqlite(conn)
    big, key = ("INTEGER", "TEXT") if sqlite else ("BIGINT", 'TEXT COLLATE "C"')
    # 1. the documents of everything affected, as they are now
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {NEW}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {NEW} (kind TEXT NOT NULL, ref_id {big} NOT NULL, "
        f"sort_key {key} NOT NULL, terms TEXT NOT NULL, same BOOLEAN NOT NULL, "
        "PRIMARY KEY (kind, ref_id))"
    )
    p_where = f"AND p.id IN (SELECT ref_id FROM {AFFECTED} WHERE kind = '{DOC_PRACTITIONER}')"
    m_where = f"AND m.id IN (SELECT ref_id FROM {AFFECTED} WHERE kind = '{DOC_MAILBOX}')"
    conn.execute(
        text(f"""
            INSERT INTO {NEW} (kind, ref_id, sort_key, terms, same)
            SELECT n.kind, n.ref_id, n.sort_key, n.terms, EXISTS (
                       SELECT 1 FROM directory_doc d WHERE d.kind = n.kind
                          AND d.ref_id = n.ref_id AND d.sort_key = n.sort_key
                          AND d.terms = n.terms)
            FROM ({_practitioner_docs(conn, p_where)} UNION ALL {_mailbox_docs(m_where)}) n
        """),
        {"sep": SORT_SEPARATOR},
    )
    # 2. remove the old documents that changed or went away (CROSS JOIN: SQLite walks the
    # few marked ones, rather than every document in rowid order to spare a sort)
    old = (f"FROM {AFFECTED} a CROSS JOIN directory_doc d WHERE d.kind = a.kind "
           f"AND d.ref_id = a.ref_id AND NOT EXISTS (SELECT 1 FROM {NEW} n "
           "WHERE n.kind = d.kind AND n.ref_id = d.ref_id AND n.same)")
    if sqlite:
        # in rowid order: FTS5 flushes its pending changes whenever a rowid goes backwards
        conn.exec_driver_sql(
            f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, terms) "
            f"SELECT 'delete', d.pos, d.terms {old} ORDER BY d.pos"
        )
    conn.exec_driver_sql(f"DELETE FROM directory_doc WHERE pos IN (SELECT d.pos {old})")
    # 3. place the others between their neighbours: lo/hi, the positions of the neighbours
    # (NULL: none); rn/cnt, rank and number of the new documents sharing that gap
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {PLACED}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {PLACED} (pos {big} NOT NULL, kind TEXT NOT NULL, ref_id {big} "
        f"NOT NULL, sort_key {key} NOT NULL, terms TEXT NOT NULL, tight BOOLEAN NOT NULL)"
    )
    conn.execute(
        text(f"""
            INSERT INTO {PLACED} (pos, kind, ref_id, sort_key, terms, tight)
            SELECT CASE
                     WHEN lo IS NULL AND hi IS NULL THEN rn * :gap
                     WHEN lo IS NULL THEN hi - (cnt - rn + 1) * :gap
                     WHEN hi IS NULL THEN lo + rn * :gap
                     ELSE lo + (hi - lo) / (cnt + 1) * rn
                   END,
                   kind, ref_id, sort_key, terms,
                   lo IS NOT NULL AND hi IS NOT NULL AND hi - lo <= cnt
            FROM (
                SELECT g.*, row_number() OVER (PARTITION BY lo, hi ORDER BY {_by_key(conn)}) AS rn,
                       count(*) OVER (PARTITION BY lo, hi) AS cnt
                FROM (
                    SELECT n.kind, n.ref_id, n.sort_key, n.terms,
                        (SELECT d.pos FROM directory_doc d WHERE d.sort_key < n.sort_key
                         ORDER BY d.sort_key DESC LIMIT 1) AS lo,
                        (SELECT d.pos FROM directory_doc d WHERE d.sort_key > n.sort_key
                         ORDER BY d.sort_key LIMIT 1) AS hi
                    FROM {NEW} n WHERE NOT n.same
                ) g
            ) w
        """),
        {"gap": GAP},
    )
    if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {PLACED} WHERE tight)")).scalar() in (
        1, True
    ):
        raise _Renumber
    conn.exec_driver_sql(
        "INSERT INTO directory_doc (pos, kind, ref_id, sort_key, terms) "
        f"SELECT pos, kind, ref_id, sort_key, terms FROM {PLACED}"
    )
    if sqlite:
        conn.exec_driver_sql(
            f"INSERT INTO {FTS_TABLE}(rowid, terms) SELECT pos, terms FROM {PLACED} "
            "ORDER BY pos"
        )
    conn.exec_driver_sql(f"DELETE FROM {PLACED}")
    conn.exec_driver_sql(f"DELETE FROM {NEW}")
