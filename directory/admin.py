"""Managing the directory by hand: add, edit, deactivate, show (issue 6, «Admin management»).

Used by ``caducee directory add|edit|deactivate|show`` and by the webmail's admin pages.
Every change records who and when, is journaled (``directory.edited``) when a journal is
given, and is kept as an *override*: the extract's own record (``raw``) is never changed
by hand, the override is laid over it, and the next import neither undoes it nor stays
silent about disagreeing with it (:mod:`directory.merge`).

Functions take a :class:`~sqlalchemy.Connection` inside the caller's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, DateTime, bindparam, text

from directory import idchecks, lookup, merge, records, search_index
from directory.formats import MAILBOX_COLUMNS, PERSON_COLUMNS, SEPARATOR, M, P
from directory.parse_mailbox import MAILBOX_TYPES, valid_address
from directory.parse_person import activity_key, activity_terms
from directory.professions import PROFESSIONS
from directory.tables import SOURCE_MANUAL

if TYPE_CHECKING:
    from audit.journal import Journal

_TS = DateTime(timezone=True)


class AdminError(ValueError):
    """A refused change; the message is in French, for the admin."""


@dataclass(frozen=True)
class Who:
    """Who makes a change, and through what (``cli``, ``web``)."""

    actor: str
    protocol: str = "cli"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _stamp(value: Any, who: Who, now: datetime) -> dict[str, Any]:
    return {"value": value, "by": who.actor, "at": now.isoformat(timespec="seconds"),
            "imported": None}


def _journal(journal: Journal | None, conn: Connection, who: Who, operation: str,
             kind: str, key: str) -> None:
    if journal is None:
        return
    from audit.events import Action, AuditEvent

    journal.append(conn, [AuditEvent(
        action=Action.DIRECTORY_EDITED, actor=who.actor, protocol=who.protocol,
        object_ids=((kind, key), ("operation", operation)),
    )])


def _national(value: str, *, lenient: bool = False) -> str:
    nat = idchecks.national_id_of(value)
    if nat is None:
        raise AdminError(f"Identifiant invalide : « {value} » (RPPS : 11 chiffres, ou 8 + RPPS).")
    problem = idchecks.national_id(nat[0], nat[1:], nat)
    if problem is not None and not (lenient and problem[1]):
        raise AdminError(f"Identifiant invalide : « {value} » ({problem[0]}).")
    return nat


def _plain(*values: str) -> None:
    """Values stored in an extract-like record cannot hold its separator or a line break."""
    if any(c in v for v in values for c in (SEPARATOR, "\n", "\r")):
        raise AdminError("Les caractères « | » et retour à la ligne sont interdits.")


def _refresh(conn: Connection, practitioners: list[int] = (), mailboxes: list[int] = ()) -> None:  # type: ignore[assignment]
    search_index.begin_marking(conn)
    search_index.mark(conn, practitioners, mailboxes)
    search_index.refresh_marked(conn)


# -- practitioners ------------------------------------------------------------------------


def add_practitioner(
    conn: Connection, *, national_id: str, last_name: str, first_name: str = "",
    profession: str, civility: str = "", civility_code: str = "", specialty_code: str = "",
    specialty: str = "", town: str = "", postcode: str = "", departement: str = "",
    who: Who, now: datetime | None = None, journal: Journal | None = None,
    lenient: bool = False,
) -> lookup.PractitionerEntry:
    """Add a practitioner absent from the extracts (with one activity)."""
    now = _now(now)
    nat = _national(national_id, lenient=lenient)
    _plain(last_name, first_name, civility, civility_code, specialty_code, specialty, town,
           postcode, departement)
    if not last_name.strip():
        raise AdminError("Le nom est obligatoire.")
    profession = _activity_value("profession", profession.strip())
    specialty_code = _activity_value("specialty_code", specialty_code.strip())
    postcode = _activity_value("postcode", postcode.strip())
    departement = _activity_value("departement", departement.strip())
    pid = int(nat)
    if conn.execute(text("SELECT 1 FROM practitioner WHERE id = :id"), {"id": pid}).first():
        raise AdminError(f"Le praticien {nat} existe déjà : utilisez « edit ».")
    person = [""] * P.ACTIVITY_START
    person[P.ID_TYPE], person[P.ID_PP], person[P.NATIONAL_ID] = nat[0], nat[1:], nat
    person[P.CIVILITY_EX_CODE], person[P.CIVILITY_EX] = civility_code, civility
    person[P.LAST_NAME], person[P.FIRST_NAME] = last_name.strip(), first_name.strip()
    act = [""] * (len(PERSON_COLUMNS) - P.ACTIVITY_START)

    def put(col: int, value: str) -> None:
        act[col - P.ACTIVITY_START] = value

    put(P.PROFESSION, profession)
    put(P.PROFESSION_LABEL, PROFESSIONS[profession])
    put(P.SPECIALTY, specialty_code)
    put(P.SPECIALTY_LABEL, specialty)
    put(P.TOWN, town)
    put(P.POSTCODE, postcode)
    put(P.DEPARTEMENT, departement)
    act_raw = SEPARATOR.join(act)
    overrides = {name: _stamp(person[col], who, now)
                 for name, col in records.PRACTITIONER_FIELDS.items() if person[col]}
    conn.execute(
        text("""
            INSERT INTO practitioner (id, national_id, raw, name_terms, source, listed, active,
                inactive_since, created_at, updated_at, created_import, changed_import, overrides)
            VALUES (:id, :nat, :raw, :terms, :src, true, true, NULL, :now, :now, 0, 0, :ov)
        """).bindparams(bindparam("now", type_=_TS)),
        {"id": pid, "nat": nat, "raw": SEPARATOR.join(person),
         "terms": records.person_name_terms(person), "src": SOURCE_MANUAL, "now": now,
         "ov": records.dump_overrides(overrides)},
    )
    conn.execute(
        text("""
            INSERT INTO practitioner_activity (practitioner_id, act_key, raw, terms, source,
                active, inactive_since, created_import, changed_import)
            VALUES (:pid, :key, :raw, :terms, :src, true, NULL, 0, 0)
        """),
        {"pid": pid, "key": activity_key(act_raw), "raw": act_raw,
         "terms": activity_terms(profession, specialty_code, town, postcode, departement),
         "src": SOURCE_MANUAL},
    )
    _refresh(conn, practitioners=[pid],
             mailboxes=_ids(conn, "SELECT id FROM directory_mailbox WHERE practitioner_id = :p",
                            {"p": pid}))
    _journal(journal, conn, who, "add", "practitioner", nat)
    entry = lookup.practitioner(conn, nat)
    assert entry is not None
    return entry


def _ids(conn: Connection, sql: str, params: dict[str, Any]) -> list[int]:
    return [int(r[0]) for r in conn.execute(text(sql), params)]


_POSTCODE = re.compile(r"\d{5}")
_DEPARTEMENT = re.compile(r"\d{2,3}|2[AB]")


def _activity_value(name: str, value: str) -> str:
    """Check a correction of the main activity (:data:`records.ACTIVITY_FIELDS`)."""
    if name == "profession" and value not in PROFESSIONS:
        raise AdminError(f"Profession inconnue : « {value} ».")
    if name == "postcode" and value and not _POSTCODE.fullmatch(value):
        raise AdminError(f"Code postal invalide : « {value} » (5 chiffres).")
    if name == "departement":
        value = value.upper()
        if value and not _DEPARTEMENT.fullmatch(value):
            raise AdminError(f"Département invalide : « {value} » (ex. 69, 2A, 974).")
    if name == "specialty_code":
        value = value.upper()
    return value


def edit_practitioner(
    conn: Connection, national_id: str, changes: Mapping[str, str | bool | None], *,
    who: Who, now: datetime | None = None, journal: Journal | None = None,
) -> lookup.PractitionerEntry:
    """Override fields: names and civility (:data:`records.PRACTITIONER_FIELDS`), and the
    profession, specialty and site (town, postcode, département) of the main activity
    (:data:`records.ACTIVITY_FIELDS`); ``active``: False deactivates by hand. A value of
    None removes the override (the extract's value, or state, applies again)."""
    now = _now(now)
    nat = _national(national_id, lenient=True)
    row = conn.execute(
        text("SELECT id, raw, overrides, listed FROM practitioner WHERE id = :id"),
        {"id": int(nat)},
    ).first()
    if row is None:
        raise AdminError(f"Praticien inconnu : {nat}.")
    allowed = {*records.PRACTITIONER_FIELDS, *records.ACTIVITY_FIELDS, "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise AdminError("Champ non modifiable : " + ", ".join(sorted(unknown)) + ".")
    overrides = records.load_overrides(row.overrides)
    for name, value in changes.items():
        if value is None or (name == "active" and value):
            overrides.pop(name, None)
        elif name == "active":
            overrides[name] = _stamp(False, who, now)
        else:
            v = str(value).strip()
            if name == "last_name" and not v:
                raise AdminError("Le nom ne peut pas être vide.")
            if name in records.ACTIVITY_FIELDS:
                v = _activity_value(name, v)
            overrides[name] = _stamp(v, who, now)
    merge.apply_activity_overrides(conn, int(nat), overrides)
    fields = records.person_fields(row.raw, overrides)
    active = bool(row.listed) and not records.deactivated(overrides)
    conn.execute(
        text("""
            UPDATE practitioner SET name_terms = :terms, overrides = :ov, active = :active,
                inactive_since = CASE WHEN :active THEN NULL
                                 ELSE coalesce(inactive_since, :now) END,
                updated_at = :now
            WHERE id = :id
        """).bindparams(bindparam("now", type_=_TS)),
        {"terms": records.person_name_terms(fields), "ov": records.dump_overrides(overrides),
         "active": active, "now": now, "id": int(nat)},
    )
    _refresh(conn, practitioners=[int(nat)],
             mailboxes=_ids(conn, "SELECT id FROM directory_mailbox WHERE practitioner_id = :p",
                            {"p": int(nat)}))
    op = "deactivate" if changes.get("active") is False else "edit"
    _journal(journal, conn, who, op, "practitioner", nat)
    entry = lookup.practitioner(conn, nat)
    assert entry is not None
    return entry


# -- mailboxes ----------------------------------------------------------------------------


def add_mailbox(
    conn: Connection, *, address: str, mailbox_type: str, national_id: str | None = None,
    last_name: str = "", first_name: str = "", structure_name: str = "", service: str = "",
    profession: str = "", red_list: bool = False, who: Who, now: datetime | None = None,
    journal: Journal | None = None,
) -> lookup.MailboxEntry:
    """Add a mailbox absent from the extracts (e.g. one of this operator's own)."""
    now = _now(now)
    _plain(last_name, first_name, structure_name, service, profession)
    addr = address.strip().lower()
    if not valid_address(addr):
        raise AdminError(f"Adresse invalide : « {address} ».")
    mtype = mailbox_type.strip().upper()
    if mtype not in MAILBOX_TYPES:
        raise AdminError("Type de boîte invalide (PER, ORG, APP ou CAB).")
    nat = _national(national_id, lenient=True) if national_id else None
    if mtype == "PER" and nat is None:
        raise AdminError("Une boîte personnelle (PER) exige l'identifiant du praticien.")
    if profession and profession not in PROFESSIONS:
        raise AdminError(f"Profession inconnue : « {profession} ».")
    if conn.execute(text("SELECT 1 FROM directory_mailbox WHERE address = :a"),
                    {"a": addr}).first():
        raise AdminError(f"La boîte {addr} existe déjà : utilisez « edit ».")
    f = [""] * len(MAILBOX_COLUMNS)
    f[M.TYPE], f[M.ADDRESS] = mtype, addr
    if nat:
        f[M.ID_TYPE], f[M.ID_PP], f[M.NATIONAL_ID] = nat[0], nat[1:], nat
    f[M.LAST_NAME], f[M.FIRST_NAME] = last_name.strip(), first_name.strip()
    f[M.STRUCTURE_NAME], f[M.SERVICE] = structure_name.strip(), service.strip()
    f[M.PROFESSION] = profession
    f[M.PROFESSION_LABEL] = PROFESSIONS.get(profession, "")
    overrides = {name: _stamp(f[col], who, now)
                 for name, col in records.MAILBOX_FIELDS.items() if f[col]}
    if red_list:
        overrides["red_list"] = _stamp(True, who, now)
    mtype, name_terms, national, terms, _ = records.mailbox_derived(f, addr)
    conn.execute(
        text("""
            INSERT INTO directory_mailbox (address, mailbox_type, national_id, practitioner_id,
                raw, name_terms, terms, red_list, source, listed, active, inactive_since,
                created_at, updated_at, created_import, changed_import, overrides)
            VALUES (:a, :t, :nat, :pid, :raw, :nterms, :terms, :red, :src, true, true, NULL,
                :now, :now, 0, 0, :ov)
        """).bindparams(bindparam("now", type_=_TS)),
        {"a": addr, "t": mtype, "nat": national, "pid": int(national) if national else None,
         "raw": SEPARATOR.join(f), "nterms": name_terms, "terms": terms, "red": red_list,
         "src": SOURCE_MANUAL, "now": now, "ov": records.dump_overrides(overrides)},
    )
    mid = _ids(conn, "SELECT id FROM directory_mailbox WHERE address = :a", {"a": addr})
    _refresh(conn, practitioners=[int(national)] if national else [], mailboxes=mid)
    _journal(journal, conn, who, "add", "mailbox", addr)
    entry = lookup.mailbox(conn, addr)
    assert entry is not None
    return entry


def edit_mailbox(
    conn: Connection, address: str, changes: Mapping[str, str | bool | None], *,
    who: Who, now: datetime | None = None, journal: Journal | None = None,
) -> lookup.MailboxEntry:
    """Override fields (see :data:`records.MAILBOX_FIELDS`, plus ``red_list`` and
    ``active``); a value of None removes the override."""
    now = _now(now)
    addr = address.strip().lower()
    row = conn.execute(
        text("SELECT id, raw, overrides, practitioner_id, listed FROM directory_mailbox "
             "WHERE address = :a"),
        {"a": addr},
    ).first()
    if row is None:
        raise AdminError(f"Boîte inconnue : {addr}.")
    allowed = {*records.MAILBOX_FIELDS, *records.STATE_FIELDS}
    unknown = set(changes) - allowed
    if unknown:
        raise AdminError("Champ non modifiable : " + ", ".join(sorted(unknown)) + ".")
    overrides = records.load_overrides(row.overrides)
    for name, value in changes.items():
        if value is None or (name == "active" and value):
            overrides.pop(name, None)
        elif name in records.STATE_FIELDS:
            overrides[name] = _stamp(bool(value), who, now)
        else:
            v = str(value).strip()
            if name == "mailbox_type":
                v = v.upper()
                if v not in MAILBOX_TYPES:
                    raise AdminError("Type de boîte invalide (PER, ORG, APP ou CAB).")
            elif name == "national_id" and v:
                v = _national(v, lenient=True)
            elif name == "profession" and v and v not in PROFESSIONS:
                raise AdminError(f"Profession inconnue : « {v} ».")
            overrides[name] = _stamp(v, who, now)
    fields = records.mailbox_fields(row.raw, overrides)
    mtype, name_terms, national, terms, _ = records.mailbox_derived(fields, addr)
    if mtype == "PER" and national is None:
        raise AdminError("Une boîte personnelle (PER) exige l'identifiant du praticien.")
    active = bool(row.listed) and not records.deactivated(overrides)
    merge.update_mailbox_derived(conn, int(row.id), mtype, national, name_terms, terms, active,
                                 overrides, now)
    touched = [p for p in (row.practitioner_id, int(national) if national else None) if p]
    _refresh(conn, practitioners=[int(p) for p in touched], mailboxes=[int(row.id)])
    op = "deactivate" if changes.get("active") is False else "edit"
    _journal(journal, conn, who, op, "mailbox", addr)
    entry = lookup.mailbox(conn, addr)
    assert entry is not None
    return entry


def deactivate(
    conn: Connection, target: str, *, who: Who, now: datetime | None = None,
    journal: Journal | None = None,
) -> None:
    """Deactivate a practitioner (national id / RPPS) or a mailbox (address) by hand."""
    if "@" in target:
        edit_mailbox(conn, target, {"active": False}, who=who, now=now, journal=journal)
    else:
        edit_practitioner(conn, target, {"active": False}, who=who, now=now, journal=journal)


def reactivate(
    conn: Connection, target: str, *, who: Who, now: datetime | None = None,
    journal: Journal | None = None,
) -> None:
    """Remove a manual deactivation: the extracts decide again."""
    if "@" in target:
        edit_mailbox(conn, target, {"active": None}, who=who, now=now, journal=journal)
    else:
        edit_practitioner(conn, target, {"active": None}, who=who, now=now, journal=journal)


# -- show ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityDetails:
    activity: records.Activity
    active: bool
    inactive_since: datetime | None
    source: str


@dataclass(frozen=True)
class PractitionerDetails:
    entry: lookup.PractitionerEntry
    source: str
    inactive_since: datetime | None
    created_at: datetime
    updated_at: datetime
    fields: dict[str, str]  # effective person columns, by French column name
    overrides: records.Overrides
    activities: tuple[ActivityDetails, ...]
    mailboxes: tuple[lookup.MailboxEntry, ...]


@dataclass(frozen=True)
class MailboxDetails:
    entry: lookup.MailboxEntry
    inactive_since: datetime | None
    created_at: datetime
    updated_at: datetime
    fields: dict[str, str]
    overrides: records.Overrides


def show(conn: Connection, target: str) -> PractitionerDetails | MailboxDetails:
    """Everything the directory holds on a practitioner (national id / RPPS) or a mailbox."""
    if "@" in target:
        entry = lookup.mailbox(conn, target)
        if entry is None:
            raise AdminError(f"Boîte inconnue : {target.strip().lower()}.")
        row = conn.execute(
            text("SELECT raw, overrides, inactive_since, created_at, updated_at "
                 "FROM directory_mailbox WHERE address = :a").columns(
                inactive_since=_TS, created_at=_TS, updated_at=_TS),
            {"a": entry.address},
        ).one()
        ov = records.load_overrides(row.overrides)
        f = records.mailbox_fields(row.raw, ov)
        return MailboxDetails(entry, row.inactive_since, row.created_at, row.updated_at,
                              dict(zip(MAILBOX_COLUMNS, f, strict=True)), ov)
    nat = idchecks.national_id_of(target)
    pentry = lookup.practitioner(conn, target) if nat else None
    if pentry is None or nat is None:
        raise AdminError(f"Praticien inconnu : {target}.")
    row = conn.execute(
        text("SELECT raw, overrides, source, inactive_since, created_at, updated_at "
             "FROM practitioner WHERE id = :id").columns(
            inactive_since=_TS, created_at=_TS, updated_at=_TS),
        {"id": int(nat)},
    ).one()
    ov = records.load_overrides(row.overrides)
    f = records.person_fields(row.raw, ov)
    acts = tuple(  # the first is the main activity, which the overrides correct
        ActivityDetails(records.activity_record(a.raw, ov if i == 0 else None), bool(a.active),
                        a.inactive_since, a.source)
        for i, a in enumerate(conn.execute(
            text("SELECT raw, active, inactive_since, source FROM practitioner_activity "  # noqa: S608 - a constant
                 f"WHERE practitioner_id = :id {records.MAIN_ACTIVITY_FIRST}").columns(
                inactive_since=_TS),
            {"id": int(nat)},
        ))
    )
    boxes = tuple(
        e for e in (
            lookup.mailbox(conn, a) for (a,) in conn.execute(
                text("SELECT address FROM directory_mailbox WHERE practitioner_id = :id "
                     "ORDER BY address"), {"id": int(nat)})
        ) if e is not None
    )
    return PractitionerDetails(
        pentry, row.source, row.inactive_since, row.created_at, row.updated_at,
        dict(zip(PERSON_COLUMNS[: P.ACTIVITY_START], f, strict=True)), ov, acts, boxes,
    )


__all__ = [
    "AdminError", "MailboxDetails", "PractitionerDetails", "Who", "add_mailbox",
    "add_practitioner", "deactivate", "edit_mailbox", "edit_practitioner", "reactivate", "show",
]
