"""Merging the staged extract into the directory: set-based upserts and the delta.

Runs inside the import's single transaction. Rules (issue 6, «Upsert and delta»):

* practitioners are keyed by national identifier, mailboxes by address, activities by
  (practitioner, hash of the activity's fields);
* a row whose source record is unchanged is not touched, so re-importing the same file
  changes nothing;
* a row absent from the new extract becomes inactive with the date, never deleted (only
  for the kinds of file present in this import, and only rows that came from an import);
* manual overrides are never overwritten: rows that carry some are finished in Python
  (:func:`apply_overrides`), and every field where the import disagrees is reported.

Every statement is plain SQL that SQLite (≥ 3.35) and PostgreSQL both run; the few dialect
differences (de-duplication, string aggregation) are chosen here.
"""

# ruff: noqa: S608 - SQL is assembled from constant table names and dialect fragments;
# every value is a bound parameter.

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Row, bindparam, text
from sqlalchemy.sql.elements import TextClause

from directory import records, search_index, staging
from directory.formats import FileKind, P
from directory.tables import SOURCE_IMPORT

_TS = DateTime(timezone=True)


@dataclass
class Counts:
    added: int = 0
    changed: int = 0
    deactivated: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added, "changed": self.changed, "deactivated": self.deactivated}


@dataclass(frozen=True)
class Disagreement:
    """An import said something else than a manual override (the override is kept)."""

    kind: str  # "practitioner" / "mailbox"
    key: str  # national id / address
    field: str
    imported: str
    kept: str
    by: str
    at: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.key}: field «{self.field}»: the import says «{self.imported}», "
            f"the manual value «{self.kept}» is kept (set by {self.by} on {self.at})"
        )


@dataclass
class MergeResult:
    practitioners: Counts = field(default_factory=Counts)
    activities: Counts = field(default_factory=Counts)
    mailboxes: Counts = field(default_factory=Counts)
    disagreements: list[Disagreement] = field(default_factory=list)
    index: str = "none"
    documents: int = 0


def _sql(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("now", type_=_TS))


def _exists(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> bool:
    return conn.execute(text(f"SELECT EXISTS ({sql})"), params or {}).scalar() in (1, True)


KEYS = "directory_stage_keys"
#: SQLite: the practitioners whose record is staged more than once, and the first one's seq.
REPEATED = "directory_stage_repeated"
ADDRESSES = "directory_stage_addresses"
BOX_CHANGES = "directory_stage_mailbox_changes"


def _key_table(conn: Connection) -> tuple[str, str]:
    """(64-bit integer type, table option) of a temporary key table: on SQLite the key is
    the table (``WITHOUT ROWID``: one B-tree instead of a table and its index)."""
    if conn.dialect.name == "sqlite":
        return "INTEGER", " WITHOUT ROWID"
    return "BIGINT", ""


def prepare(conn: Connection, kinds: set[FileKind]) -> list[tuple[int, str, int]]:
    """Index the staged keys, before the merge transaction; return the repeated addresses.

    Builds temporary tables of this connection (on SQLite they live in the temporary
    database: building them takes no lock on the directory): :data:`ADDRESSES`, every
    staged mailbox address with the ``seq`` of its first line, and — when the directory
    already holds practitioners, for the delta — :data:`KEYS`, every staged (practitioner,
    activity) key. Returns
    ``(seq, address, seq of the first occurrence)`` of each repeated address, in file order
    (the caller drops those lines before the merge).
    """
    big, rowid = _key_table(conn)
    repeated: list[tuple[int, str, int]] = []
    conn.info.pop(KEYS, None)
    conn.info.pop(REPEATED, None)
    with conn.begin():
        if FileKind.MAILBOX in kinds:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ADDRESSES}")
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {ADDRESSES} (address TEXT PRIMARY KEY, "
                f"seq {big} NOT NULL){rowid}"
            )
            distinct = conn.exec_driver_sql(
                f"INSERT INTO {ADDRESSES} (address, seq) SELECT address, min(seq) "
                f"FROM {staging.MAILBOX} GROUP BY address ORDER BY address"
            ).rowcount
            staged = int(conn.exec_driver_sql(
                f"SELECT count(*) FROM {staging.MAILBOX}").scalar_one())
            if distinct != staged:
                repeated = [(int(a), str(b), int(c)) for a, b, c in conn.exec_driver_sql(
                    f"SELECT s.seq, s.address, k.seq FROM {staging.MAILBOX} s "
                    f"JOIN {ADDRESSES} k ON k.address = s.address WHERE s.seq <> k.seq "
                    "ORDER BY s.seq"
                )]
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ANALYZE {ADDRESSES}")
        if FileKind.PERSON in kinds and _exists(conn, "SELECT 1 FROM practitioner"):
            _stage_keys(conn)
            _stage_repeated(conn)
    return repeated


def _stage_repeated(conn: Connection) -> None:
    """SQLite, when the directory holds practitioners: :data:`REPEATED`, the practitioners
    listed in two separate runs of lines (an unsorted file), whose first record only is
    merged (PostgreSQL: DISTINCT ON). Into an empty directory the first record wins anyway:
    the later ones meet a row this import wrote (see :func:`merge_practitioners`). Once per
    connection, as :func:`_stage_keys`."""
    if conn.dialect.name != "sqlite" or conn.info.get(REPEATED):
        return
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {REPEATED}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {REPEATED} (pid INTEGER PRIMARY KEY, seq INTEGER NOT NULL)"
    )
    conn.exec_driver_sql(
        f"INSERT INTO {REPEATED} (pid, seq) SELECT pid, min(seq) FROM {staging.PERSON} "
        "WHERE person_raw IS NOT NULL GROUP BY pid HAVING count(*) > 1"
    )
    conn.info[REPEATED] = True


def _stage_keys(conn: Connection) -> None:
    """:data:`KEYS`, for the delta (once per connection: :func:`prepare` or the merge).

    The delta compares with the staged keys through an index: NOT IN over millions of
    rows can degrade into a scan per row (PostgreSQL past work_mem, SQLite row values).
    """
    if conn.info.get(KEYS):
        return
    big, rowid = _key_table(conn)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {KEYS}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {KEYS} (pid {big} NOT NULL, act_key {big} NOT NULL, "
        f"PRIMARY KEY (pid, act_key)){rowid}"
    )
    # (lines come grouped by practitioner, mostly in key order: no sort)
    conn.exec_driver_sql(
        f"INSERT INTO {KEYS} (pid, act_key) SELECT pid, act_key FROM {staging.PERSON} "
        "WHERE true ON CONFLICT DO NOTHING"
    )
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {KEYS}")
    conn.info[KEYS] = True


def merge_practitioners(conn: Connection, imp: int, now: datetime, result: MergeResult) -> None:
    """Upsert practitioners and their activities from the person staging table; delta."""
    params = {"imp": imp, "now": now}
    had_rows = _exists(conn, "SELECT 1 FROM practitioner")
    stage = staging.PERSON
    # A practitioner listed in two separate runs of lines is staged twice: the first
    # occurrence wins, on every import (PostgreSQL must not update a row twice in one
    # statement anyway). Had the first record been left out only when equal to the stored
    # one, a later, different one would win every second import of the same file.
    source = f"SELECT * FROM {stage} WHERE person_raw IS NOT NULL"
    if had_rows:
        _stage_repeated(conn)  # (built beforehand, unless the directory was empty then)
    if conn.info.get(REPEATED) and _exists(conn, f"SELECT 1 FROM {REPEATED}"):
        source += (f" AND NOT EXISTS (SELECT 1 FROM {REPEATED} r WHERE r.pid = {stage}.pid "
                   f"AND r.seq <> {stage}.seq)")
    if conn.dialect.name == "postgresql":
        source = (f"SELECT DISTINCT ON (pid) * FROM {stage} WHERE person_raw IS NOT NULL "
                  "ORDER BY pid, seq")
    upsert = conn.execute(
        _sql(f"""
            INSERT INTO practitioner (id, national_id, raw, name_terms, source, listed, active,
                inactive_since, created_at, updated_at, created_import, changed_import, overrides)
            SELECT s.pid, s.national_id, s.person_raw, s.name_terms, '{SOURCE_IMPORT}', true,
                true, NULL, :now, :now, :imp, :imp, NULL
            FROM ({source}) s WHERE true
            ON CONFLICT (id) DO UPDATE SET
                raw = excluded.raw,
                name_terms = CASE WHEN practitioner.overrides IS NULL
                             THEN excluded.name_terms ELSE practitioner.name_terms END,
                source = excluded.source,
                listed = true,
                active = CASE WHEN practitioner.overrides IS NULL
                         THEN true ELSE practitioner.active END,
                inactive_since = CASE WHEN practitioner.overrides IS NULL
                                 THEN NULL ELSE practitioner.inactive_since END,
                updated_at = excluded.updated_at,
                changed_import = excluded.changed_import
            WHERE practitioner.changed_import <> excluded.changed_import AND (
                  practitioner.raw <> excluded.raw
               OR practitioner.source <> excluded.source
               OR practitioner.listed = false)
        """),
        params,
    )
    touched = max(upsert.rowcount, 0)
    counts = result.practitioners
    if had_rows:
        counts.added = int(conn.execute(
            text("SELECT count(*) FROM practitioner WHERE created_import = :imp"), params
        ).scalar_one())
    else:
        counts.added = touched
    counts.changed = touched - counts.added

    # activities: reactivate the ones seen again, add the new ones, retire the missing ones
    acts = result.activities
    if had_rows:
        _stage_keys(conn)  # (built beforehand, unless the directory was empty then)
        res = conn.execute(
            text(f"""
                UPDATE practitioner_activity SET active = true, inactive_since = NULL,
                    changed_import = :imp
                WHERE active = false AND EXISTS (
                    SELECT 1 FROM {KEYS} k WHERE k.pid = practitioner_activity.practitioner_id
                      AND k.act_key = practitioner_activity.act_key)
            """),
            params,
        )
        acts.changed = max(res.rowcount, 0)
    res = conn.execute(
        text(f"""
            INSERT INTO practitioner_activity (practitioner_id, act_key, raw, terms, source,
                active, inactive_since, created_import, changed_import)
            SELECT pid, act_key, act_raw, terms, '{SOURCE_IMPORT}', true, NULL, :imp, :imp
            FROM {stage} WHERE true
            ON CONFLICT (practitioner_id, act_key) DO NOTHING
        """),
        params,
    )
    acts.added = max(res.rowcount, 0)
    if had_rows:
        # the missing keys are found by walking the (practitioner, activity) index beside
        # the staged keys, in the same order; only those rows are then read
        res = conn.execute(
            _sql(f"""
                UPDATE practitioner_activity SET active = false, inactive_since = :now,
                    changed_import = :imp
                WHERE id IN (
                    SELECT a.id FROM practitioner_activity a WHERE NOT EXISTS (
                        SELECT 1 FROM {KEYS} k
                        WHERE k.pid = a.practitioner_id AND k.act_key = a.act_key))
                  AND active = true AND source = '{SOURCE_IMPORT}' AND created_import <> :imp
            """),
            params,
        )
        acts.deactivated = max(res.rowcount, 0)
        res = conn.execute(
            _sql(f"""
                UPDATE practitioner SET listed = false, active = false,
                    inactive_since = coalesce(inactive_since, :now),
                    updated_at = :now, changed_import = :imp
                WHERE listed = true AND source = '{SOURCE_IMPORT}' AND created_import <> :imp
                  AND NOT EXISTS (SELECT 1 FROM {KEYS} k WHERE k.pid = practitioner.id)
            """),
            params,
        )
        counts.deactivated = max(res.rowcount, 0)
        # a practitioner whose activities changed has changed
        res = conn.execute(
            _sql("""
                UPDATE practitioner SET changed_import = :imp, updated_at = :now
                WHERE changed_import <> :imp AND id IN (
                    SELECT practitioner_id FROM practitioner_activity WHERE changed_import = :imp)
            """),
            params,
        )
        counts.changed += max(res.rowcount, 0)
        _practitioner_overrides(conn, imp, now, result)


#: How a state override, and what an import implies for it, read in a report.
_STATE_SHOWN: dict[str, dict[bool, str]] = {
    "active": {True: "active", False: "inactive"},
    "red_list": {True: "red list", False: "published"},
}
#: What an import listing an entry says of its state: the public extract lists it, so it is
#: active and published (it carries no red-list column).
_STATE_IMPORTED = {"active": "active", "red_list": "published"}


def _disagreements(
    result: MergeResult, kind: str, key: str, overrides: records.Overrides,
    imported: dict[str, str],
) -> bool:
    """Report each override that says something else than the import (the override is
    kept); remember in the override what the import said. Return whether any override's
    ``imported`` changed."""
    changed = False
    for name, entry in overrides.items():
        if name in _STATE_SHOWN:
            said, kept = _STATE_IMPORTED[name], _STATE_SHOWN[name][bool(entry["value"])]
        elif name in imported:
            said, kept = imported[name], str(entry["value"])
        else:
            continue
        if said.strip() == kept:
            continue
        result.disagreements.append(Disagreement(
            kind, key, name, said, kept, str(entry.get("by", "")), str(entry.get("at", "")),
        ))
        if entry.get("imported") != said:
            entry["imported"] = said
            changed = True
    return changed


def _practitioner_overrides(
    conn: Connection, imp: int, now: datetime, result: MergeResult
) -> None:
    rows = conn.execute(
        text("SELECT id, national_id, raw, name_terms, listed, active, overrides "
             "FROM practitioner WHERE overrides IS NOT NULL")
    ).all()
    if not rows:
        return
    present = {
        r[0] for r in conn.execute(
            text(f"SELECT DISTINCT pid FROM {KEYS} WHERE pid IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": [r.id for r in rows]},
        )
    }
    for row in rows:
        if row.id not in present:
            continue
        overrides = records.load_overrides(row.overrides)
        person = records.person_fields(row.raw)
        imported = {name: person[col] for name, col in records.PRACTITIONER_FIELDS.items()}
        acts = conn.execute(_ACTIVITIES_OF, {"pid": row.id}).all()
        if acts:
            main = records.activity_fields(acts[0].raw)
            imported.update({name: main[col - P.ACTIVITY_START]
                             for name, col in records.ACTIVITY_FIELDS.items()})
        changed_overrides = _disagreements(result, "practitioner", row.national_id, overrides,
                                           imported)
        changed_terms = _follow_overrides(conn, acts, overrides)
        name_terms = records.person_name_terms(records.person_fields(row.raw, overrides))
        active = bool(row.listed) and not records.deactivated(overrides)
        if (name_terms != row.name_terms or active != bool(row.active) or changed_overrides
                or changed_terms):
            conn.execute(
                _sql("""
                    UPDATE practitioner SET name_terms = :terms, active = :active,
                        inactive_since = CASE WHEN :active THEN NULL
                                         ELSE coalesce(inactive_since, :now) END,
                        overrides = :ov, updated_at = :now, changed_import = :imp
                    WHERE id = :id
                """),
                {"terms": name_terms, "active": active, "now": now, "imp": imp,
                 "ov": records.dump_overrides(overrides), "id": row.id},
            )


#: A practitioner's activities, its *main* one first (:data:`records.MAIN_ACTIVITY_FIRST`):
#: the activity an admin's corrections of profession, specialty and site apply to
#: (:data:`records.ACTIVITY_FIELDS`).
_ACTIVITIES_OF = text(
    "SELECT id, raw, terms FROM practitioner_activity WHERE practitioner_id = :pid "
    + records.MAIN_ACTIVITY_FIRST
)


def apply_activity_overrides(conn: Connection, pid: int, overrides: records.Overrides) -> bool:
    """Make the search terms of a practitioner's activities follow its overrides.

    The main activity's terms are computed from its fields with the overrides laid over
    them, every other activity's from its own fields (the main one may have changed since
    the override was set). Return whether any activity changed.
    """
    return _follow_overrides(conn, conn.execute(_ACTIVITIES_OF, {"pid": pid}).all(), overrides)


def _follow_overrides(
    conn: Connection, activities: Sequence[Row[Any]], overrides: records.Overrides
) -> bool:
    """:func:`apply_activity_overrides` on activities already read (:data:`_ACTIVITIES_OF`)."""
    changed = False
    for i, row in enumerate(activities):
        fields = records.activity_fields(row.raw, overrides if i == 0 else None)
        terms = records.activity_terms_of(fields)
        if terms != row.terms:
            conn.execute(text("UPDATE practitioner_activity SET terms = :t WHERE id = :id"),
                         {"t": terms, "id": row.id})
            changed = True
    return changed


def merge_mailboxes(conn: Connection, imp: int, now: datetime, result: MergeResult) -> None:
    """Upsert mailboxes from the mailbox staging table; delta."""
    params = {"imp": imp, "now": now}
    stage = staging.MAILBOX
    had_rows = _exists(conn, "SELECT 1 FROM directory_mailbox")
    added: int | None = None
    if had_rows:
        # One pass over the staged mailboxes finds the new and changed ones (the upsert below
        # would leave every other one as it is); only those are then written.
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {BOX_CHANGES}")
        conn.exec_driver_sql(f"""
            CREATE TEMP TABLE {BOX_CHANGES} AS
            SELECT s.address, s.mailbox_type, s.national_id, s.pid, s.raw, s.name_terms,
                   s.terms, m.id AS old_id, m.practitioner_id AS old_pid,
                   m.overrides IS NOT NULL AS overridden
            FROM {stage} s LEFT JOIN directory_mailbox m ON m.address = s.address
            WHERE m.id IS NULL OR m.raw <> s.raw OR m.source <> '{SOURCE_IMPORT}'
               OR m.listed = false
        """)
        added = int(conn.exec_driver_sql(
            f"SELECT count(*) FROM {BOX_CHANGES} WHERE old_id IS NULL").scalar_one())
        # a personal mailbox moving to another practitioner changes the old one's document
        search_index.mark(conn, practitioners=[
            r[0] for r in conn.exec_driver_sql(f"""
                SELECT old_pid FROM {BOX_CHANGES}
                WHERE old_pid IS NOT NULL AND NOT overridden
                  AND (pid IS NULL OR pid <> old_pid)
            """)
        ])
        stage = BOX_CHANGES

    def keep(col: str, new: str | None = None) -> str:
        return (f"CASE WHEN directory_mailbox.overrides IS NULL THEN {new or 'excluded.' + col} "
                f"ELSE directory_mailbox.{col} END")

    upsert = conn.execute(
        _sql(f"""
            INSERT INTO directory_mailbox (address, mailbox_type, national_id, practitioner_id,
                raw, name_terms, terms, red_list, source, listed, active, inactive_since,
                created_at, updated_at, created_import, changed_import, overrides)
            SELECT address, mailbox_type, national_id, pid, raw, name_terms, terms, false,
                '{SOURCE_IMPORT}', true, true, NULL, :now, :now, :imp, :imp, NULL
            FROM {stage} WHERE true
            ON CONFLICT (address) DO UPDATE SET
                raw = excluded.raw,
                mailbox_type = {keep('mailbox_type')},
                national_id = {keep('national_id')},
                practitioner_id = {keep('practitioner_id')},
                name_terms = {keep('name_terms')},
                terms = {keep('terms')},
                source = excluded.source,
                listed = true,
                active = {keep('active', 'true')},
                inactive_since = {keep('inactive_since', 'NULL')},
                updated_at = excluded.updated_at,
                changed_import = excluded.changed_import
            WHERE directory_mailbox.raw <> excluded.raw
               OR directory_mailbox.source <> excluded.source
               OR directory_mailbox.listed = false
        """),
        params,
    )
    touched = max(upsert.rowcount, 0)
    counts = result.mailboxes
    counts.added = touched if added is None else added
    if had_rows:
        # the missing addresses: the address index walked beside the staged ones
        res = conn.execute(
            _sql(f"""
                UPDATE directory_mailbox SET listed = false, active = false,
                    inactive_since = coalesce(inactive_since, :now),
                    updated_at = :now, changed_import = :imp
                WHERE id IN (
                    SELECT m.id FROM directory_mailbox m WHERE NOT EXISTS (
                        SELECT 1 FROM {ADDRESSES} k WHERE k.address = m.address))
                  AND listed = true AND source = '{SOURCE_IMPORT}' AND created_import <> :imp
            """),
            params,
        )
        counts.deactivated = max(res.rowcount, 0)
        _mailbox_overrides(conn, imp, now, result)
    counts.changed = touched - counts.added


def _mailbox_overrides(conn: Connection, imp: int, now: datetime, result: MergeResult) -> None:
    rows = conn.execute(
        text("SELECT m.id, m.address, m.raw, m.mailbox_type, m.national_id, m.name_terms, "
             "m.terms, m.listed, m.active, m.overrides FROM directory_mailbox m "
             "WHERE m.overrides IS NOT NULL AND EXISTS "
             f"(SELECT 1 FROM {ADDRESSES} k WHERE k.address = m.address)")
    ).all()
    for row in rows:
        overrides = records.load_overrides(row.overrides)
        fields = records.mailbox_fields(row.raw)
        imported = {name: fields[col] for name, col in records.MAILBOX_FIELDS.items()}
        changed_overrides = _disagreements(result, "mailbox", row.address, overrides, imported)
        eff = records.mailbox_fields(row.raw, overrides)
        mtype, name_terms, national, terms, _ = records.mailbox_derived(eff, row.address)
        active = bool(row.listed) and not records.deactivated(overrides)
        if (mtype, name_terms, national, terms, active) != (
            row.mailbox_type, row.name_terms, row.national_id, row.terms, bool(row.active)
        ) or changed_overrides:
            update_mailbox_derived(
                conn, row.id, mtype, national, name_terms, terms, active, overrides, now,
                imp=imp,
            )


def update_mailbox_derived(
    conn: Connection, mailbox_id: int, mtype: str, national: str | None, name_terms: str,
    terms: str, active: bool, overrides: records.Overrides, now: datetime, *,
    imp: int | None = None,
) -> None:
    """Store a mailbox's effective state (after overrides changed or an import)."""
    pid = int(national) if national else None
    conn.execute(
        _sql(f"""
            UPDATE directory_mailbox SET mailbox_type = :mtype, national_id = :nat,
                practitioner_id = :pid, name_terms = :nterms, terms = :terms, active = :active,
                inactive_since = CASE WHEN :active THEN NULL
                                 ELSE coalesce(inactive_since, :now) END,
                red_list = :red, overrides = :ov, updated_at = :now
                {', changed_import = :imp' if imp is not None else ''}
            WHERE id = :id
        """),
        {"mtype": mtype, "nat": national, "pid": pid, "nterms": name_terms, "terms": terms,
         "active": active, "now": now, "imp": imp, "id": mailbox_id,
         "red": bool(overrides.get("red_list", {}).get("value", False)),
         "ov": records.dump_overrides(overrides)},
    )


def summary(result: MergeResult) -> dict[str, Any]:
    return {
        "practitioners": result.practitioners.as_dict(),
        "activities": result.activities.as_dict(),
        "mailboxes": result.mailboxes.as_dict(),
        "disagreements": len(result.disagreements),
        "index": result.index,
        "documents": result.documents,
    }


def summary_json(result: MergeResult, extra: dict[str, Any]) -> str:
    return json.dumps({**summary(result), **extra}, ensure_ascii=False, sort_keys=True)
