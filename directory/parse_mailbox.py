"""Validating the lines of ``Extraction_Correspondance_MSSante_*.txt`` (DOMAIN.md §4).

One line = one MSSanté mailbox, keyed by its address (the file has no other stable key).
A valid line becomes one staging row::

    (line, address, mailbox_type, practitioner_key, national_id, raw, name_terms, terms)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from directory import idchecks
from directory import normalise as nz
from directory.formats import MAILBOX_COLUMNS, SEPARATOR, Header, M
from directory.issues import Issue, Severity
from directory.parse_person import width_issue
from directory.professions import PROFESSIONS

MailboxRow = tuple[int, str, str, int | None, str | None, str, str, str]

MAILBOX_TYPES = ("PER", "ORG", "APP", "CAB")

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_ADDRESS = re.compile(r"[^@\s|\"(),:;<>\[\\\]]+@" + _LABEL + r"(?:\." + _LABEL + r")+")
_POSTCODE_PREFIX = re.compile(r"^\s*\d[\dAB]\d{3}\s+")
_CEDEX = re.compile(r"\s+cedex(\s+\d+)?\s*$", re.IGNORECASE)


def valid_address(address: str) -> bool:
    """A plausible mailbox address (lower-case ``local@domain``)."""
    return bool(_ADDRESS.fullmatch(address))


@lru_cache(maxsize=1 << 15)
def town_of(delivery_line: str) -> str:
    """The town of an ``L6LIGNEACHEMINEMENT`` line: «69002 LYON CEDEX 02» → «LYON»."""
    return _CEDEX.sub("", _POSTCODE_PREFIX.sub("", delivery_line))


def mailbox_name_parts(f: list[str], address: str) -> tuple[str, ...]:
    """What a mailbox is found and sorted by: its holder, else its structure, else its address."""
    if f[M.LAST_NAME].strip():
        return (f[M.LAST_NAME], f[M.FIRST_NAME])
    if f[M.STRUCTURE_NAME].strip() or f[M.SERVICE].strip():
        return (f[M.STRUCTURE_NAME] or f[M.STRUCTURE_BRAND], f[M.SERVICE])
    return (address.partition("@")[0],)


def mailbox_terms(f: list[str], address: str, mailbox_type: str, national: str | None) -> str:
    parts = [
        nz.KIND + mailbox_type.lower(),
        nz.address_term(address),
        nz.code_term(nz.PROFESSION, f[M.PROFESSION]),
        nz.code_term(nz.SPECIALTY, f[M.SPECIALTY]),
        nz.location_terms(town_of(f[M.ADDRESS_LAST]), f[M.POSTCODE], f[M.DEPARTEMENT]),
    ]
    if national:
        parts.append(f"{nz.IDENTIFIER}{national} {nz.IDENTIFIER}{national[1:]}")
    return nz.join_terms(*parts)


class MailboxParser:
    """Turns decoded lines into staging rows, reporting each problem through ``on_issue``."""

    def __init__(
        self, header: Header, label: str, *, lenient: bool, on_issue: Callable[[Issue], None]
    ) -> None:
        self.header = header
        self.label = label
        self.lenient = lenient
        self.on_issue = on_issue
        self.lines = 0
        self.rejected = 0

    def _issue(self, line: int, col: int, message: str, value: str, *, key: bool) -> bool:
        warning = key and self.lenient
        self.on_issue(
            Issue(
                self.label, line, MAILBOX_COLUMNS[col], message, value,
                Severity.WARNING if warning else Severity.ERROR,
            )
        )
        return not warning

    def block_rows(
        self, blocks: Iterable[tuple[int, list[str]]], seq_base: int = 0
    ) -> Iterator[MailboxRow]:
        """Staging rows of blocks of consecutive lines (:meth:`RangeReader.blocks`); their
        first field is ``seq_base | line number``."""
        width = self.header.width
        canonical = self.header.canonical
        positions = self.header.positions
        for first, block in blocks:
            lineno = first - 1
            for text in block:
                lineno += 1
                if not text:
                    continue
                self.lines += 1
                f = text.split(SEPARATOR)
                if len(f) != width or f[-1]:
                    self.rejected += 1
                    self.on_issue(width_issue(self.label, lineno, f, width, MAILBOX_COLUMNS))
                    continue
                if not canonical:
                    f = [f[p] for p in positions]
                    f.append("")
                    text = SEPARATOR.join(f)
                row = self._row(lineno, f, text, seq_base)
                if row is None:
                    self.rejected += 1
                    continue
                yield row

    def _row(self, lineno: int, f: list[str], text: str, seq_base: int) -> MailboxRow | None:
        """The staging row of a line split into ``f`` (``text``: the line, canonical order)."""
        bad = False
        mtype = f[M.TYPE].strip().upper()
        if mtype not in MAILBOX_TYPES:
            bad |= self._issue(
                lineno, M.TYPE, "mailbox type must be PER, ORG, APP or CAB", f[M.TYPE], key=False
            )
        address = f[M.ADDRESS].strip().lower()
        if not valid_address(address):
            msg = "not a mail address" if address else "required value missing"
            bad |= self._issue(lineno, M.ADDRESS, msg, f[M.ADDRESS], key=False)
        nat = f[M.NATIONAL_ID].strip()
        national: str | None = None
        if nat or f[M.ID_PP].strip():
            problem = idchecks.national_id(f[M.ID_TYPE].strip(), f[M.ID_PP].strip(), nat)
            if problem is not None:
                col = M.NATIONAL_ID if "national" in problem[0] else M.ID_PP
                if f[M.ID_TYPE].strip() not in ("0", "8"):
                    col = M.ID_TYPE
                bad |= self._issue(lineno, col, problem[0], f[col], key=problem[1])
            national = nat
        elif mtype == "PER":
            bad |= self._issue(
                lineno, M.NATIONAL_ID, "a personal (PER) mailbox needs its practitioner's "
                "national identifier", "", key=False,
            )
        prof = f[M.PROFESSION].strip()
        if prof and prof not in PROFESSIONS:
            bad |= self._issue(lineno, M.PROFESSION, "unknown profession code", prof, key=False)
        if bad:
            return None
        return (
            seq_base | lineno,
            address,
            mtype,
            idchecks.practitioner_key(national) if national else None,
            national,
            text[:-1],  # the record: the line without its trailing separator
            nz.name_terms(*mailbox_name_parts(f, address)),
            mailbox_terms(f, address, mtype, national),
        )
