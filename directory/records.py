"""Reading stored source records (``raw``) with the manual overrides laid over them.

``raw`` is the ``|``-joined fields of the extract line in canonical column order
(:mod:`directory.formats`); ``overrides`` is JSON::

    {"last_name": {"value": "Lefèvre", "by": "admin@…", "at": "2026-…", "imported": "LEFEVRE"}}

``imported`` is what the latest import said for that field when it disagreed (or null).
A practitioner's overrides may also correct its main activity (:data:`ACTIVITY_FIELDS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from directory import normalise as nz
from directory.formats import MAILBOX_COLUMNS, PERSON_COLUMNS, SEPARATOR, M, P
from directory.parse_mailbox import mailbox_name_parts, mailbox_terms
from directory.parse_person import activity_terms
from directory.professions import profession_label

#: Practitioner fields an admin may override, and their column in the person record.
PRACTITIONER_FIELDS: dict[str, int] = {
    "last_name": P.LAST_NAME,
    "first_name": P.FIRST_NAME,
    "civility_code": P.CIVILITY_EX_CODE,
    "civility": P.CIVILITY_EX,
}
#: The order of a practitioner's activities that puts its *main activity* first: its first
#: active one, else its first (the merge, lookups and the admin pages use it).
MAIN_ACTIVITY_FIRST = "ORDER BY active DESC, id"

#: Fields of a practitioner's *main activity* (:data:`MAIN_ACTIVITY_FIRST`) an admin may
#: override — profession, specialty, and the main site's town, postcode and département —
#: and their column in the person record. They are kept in the practitioner's overrides.
ACTIVITY_FIELDS: dict[str, int] = {
    "profession": P.PROFESSION,
    "specialty_code": P.SPECIALTY,
    "specialty": P.SPECIALTY_LABEL,
    "town": P.TOWN,
    "postcode": P.POSTCODE,
    "departement": P.DEPARTEMENT,
}
#: Mailbox fields an admin may override, and their column in the mailbox record.
MAILBOX_FIELDS: dict[str, int] = {
    "mailbox_type": M.TYPE,
    "national_id": M.NATIONAL_ID,
    "last_name": M.LAST_NAME,
    "first_name": M.FIRST_NAME,
    "service": M.SERVICE,
    "structure_name": M.STRUCTURE_NAME,
    "profession": M.PROFESSION,
}
#: State overrides (not columns of the extract): kept whatever the imports say.
STATE_FIELDS = ("active", "red_list")

Overrides = dict[str, dict[str, Any]]


def load_overrides(text: str | None) -> Overrides:
    if not text:
        return {}
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def dump_overrides(overrides: Overrides) -> str | None:
    return json.dumps(overrides, ensure_ascii=False, sort_keys=True) if overrides else None


def deactivated(overrides: Overrides) -> bool:
    """Whether an admin deactivated the entry by hand."""
    return "active" in overrides and not overrides["active"]["value"]


def split_raw(raw: str, width: int) -> list[str]:
    fields = raw.split(SEPARATOR)
    if len(fields) < width:
        fields += [""] * (width - len(fields))
    return fields


def effective(raw: str, width: int, overrides: Overrides, columns: dict[str, int]) -> list[str]:
    """The record's fields with the overridden ones replaced."""
    fields = split_raw(raw, width)
    for name, col in columns.items():
        if name in overrides:
            fields[col] = str(overrides[name]["value"])
    return fields


def person_fields(raw: str, overrides: Overrides | None = None) -> list[str]:
    return effective(raw, P.ACTIVITY_START, overrides or {}, PRACTITIONER_FIELDS)


def mailbox_fields(raw: str, overrides: Overrides | None = None) -> list[str]:
    return effective(raw, len(MAILBOX_COLUMNS), overrides or {}, MAILBOX_FIELDS)


def activity_fields(raw: str, overrides: Overrides | None = None) -> list[str]:
    """The activity columns 9..51, re-indexed from 0 (use ``P.X - P.ACTIVITY_START``).

    With ``overrides`` (a practitioner's, for its main activity), the corrected fields are
    laid over the record, the profession's label following its code.
    """
    fields = split_raw(raw, len(PERSON_COLUMNS) - P.ACTIVITY_START)
    for name, col in ACTIVITY_FIELDS.items():
        if overrides and name in overrides:
            fields[col - P.ACTIVITY_START] = str(overrides[name]["value"])
    if overrides and "profession" in overrides:
        fields[P.PROFESSION_LABEL - P.ACTIVITY_START] = profession_label(
            str(overrides["profession"]["value"]))
    return fields


def activity_terms_of(fields: list[str]) -> str:
    """The search terms of an activity (:func:`activity_fields`), as the importer makes them."""
    a = P.ACTIVITY_START
    return activity_terms(fields[P.PROFESSION - a], fields[P.SPECIALTY - a], fields[P.TOWN - a],
                          fields[P.POSTCODE - a], fields[P.DEPARTEMENT - a])


def person_name_terms(fields: list[str]) -> str:
    return nz.name_terms(fields[P.LAST_NAME], fields[P.FIRST_NAME])


def mailbox_derived(fields: list[str], address: str) -> tuple[str, str, str | None, str, str]:
    """(mailbox_type, name_terms, national_id, terms, profession) of effective mailbox fields."""
    mtype = fields[M.TYPE].strip().upper()
    national = fields[M.NATIONAL_ID].strip() or None
    return (
        mtype,
        nz.name_terms(*mailbox_name_parts(fields, address)),
        national,
        mailbox_terms(fields, address, mtype, national),
        fields[M.PROFESSION].strip(),
    )


@dataclass(frozen=True)
class Site:
    """One practice site of an activity, as displayed."""

    name: str
    address: tuple[str, ...]
    postcode: str
    town: str
    departement: str
    phone: str


@dataclass(frozen=True)
class Activity:
    profession_code: str
    profession: str
    specialty_code: str
    specialty: str
    mode: str
    site: Site


def _a(fields: list[str], col: int) -> str:
    return fields[col - P.ACTIVITY_START].strip()


def activity_record(raw: str, overrides: Overrides | None = None) -> Activity:
    """An activity as displayed (``overrides``: for a practitioner's main activity)."""
    f = activity_fields(raw, overrides)
    street = " ".join(
        v for v in (_a(f, 28), _a(f, 29), _a(f, 31), _a(f, 32)) if v
    )
    lines = tuple(v for v in (_a(f, 26), _a(f, 27), street, _a(f, 33)) if v)
    site = Site(
        name=_a(f, P.SITE_BRAND) or _a(f, P.SITE_NAME),
        address=lines,
        postcode=_a(f, P.POSTCODE),
        town=_a(f, P.TOWN),
        departement=_a(f, P.DEPARTEMENT),
        phone=_a(f, P.PHONE),
    )
    code = _a(f, P.PROFESSION)
    return Activity(
        profession_code=code,
        profession=profession_label(code),
        specialty_code=_a(f, P.SPECIALTY),
        specialty=_a(f, P.SPECIALTY_LABEL),
        mode=_a(f, P.MODE_LABEL),
        site=site,
    )


def display_name(first_name: str, last_name: str, civility: str = "") -> str:
    return " ".join(p for p in (civility.strip(), first_name.strip(), last_name.strip()) if p)


def mailbox_display_name(fields: list[str]) -> str:
    if fields[M.LAST_NAME].strip():
        return display_name(fields[M.FIRST_NAME], fields[M.LAST_NAME], fields[M.CIVILITY])
    parts = [fields[M.STRUCTURE_NAME].strip() or fields[M.STRUCTURE_BRAND].strip(),
             fields[M.SERVICE].strip()]
    return " — ".join(p for p in parts if p)


def mailbox_site(fields: list[str]) -> Site:
    lines = tuple(
        v for v in (fields[c].strip() for c in range(M.ADDRESS_FIRST, M.ADDRESS_LAST)) if v
    )
    from directory.parse_mailbox import town_of

    return Site(
        name=fields[M.STRUCTURE_BRAND].strip() or fields[M.STRUCTURE_NAME].strip(),
        address=lines,
        postcode=fields[M.POSTCODE].strip(),
        town=town_of(fields[M.ADDRESS_LAST]).strip(),
        departement=fields[M.DEPARTEMENT].strip(),
        phone="",
    )
