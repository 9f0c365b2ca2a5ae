"""Validating the lines of ``PS_LibreAcces_Personne_activite_*.txt`` (DOMAIN.md §4).

One line = one practitioner *activity*. A valid line becomes one staging row::

    (line, practitioner_key, national_id, person_raw, name_terms, act_key, act_raw, terms)

where the three practitioner fields (``national_id``, ``person_raw``, ``name_terms``) are only
filled on the first line of a run of lines of the same practitioner (``None`` afterwards:
less to bind and store). Lines are published grouped by practitioner; a practitioner listed
in two separate runs is staged twice and the merge keeps the first.

This is the import's hot loop: per-line work is kept to one ``split``, cached checks and
cached term computations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from directory import idchecks
from directory import normalise as nz
from directory.formats import PERSON_COLUMNS, SEPARATOR, Header, P
from directory.issues import Issue, Severity
from directory.professions import PROFESSIONS

PersonRow = tuple[int, int, str | None, str | None, str | None, int, str, str]


def activity_key(act_raw: str) -> int:
    """A signed 64-bit hash of an activity's fields (its identity across imports)."""
    return int.from_bytes(
        hashlib.blake2b(act_raw.encode(), digest_size=8).digest(), "big", signed=True
    )


@lru_cache(maxsize=1 << 15)
def activity_terms(profession: str, specialty: str, town: str, postcode: str, dept: str) -> str:
    return nz.join_terms(
        nz.code_term(nz.PROFESSION, profession),
        nz.code_term(nz.SPECIALTY, specialty),
        nz.location_terms(town, postcode, dept),
    )


def practitioner_terms(national_id: str) -> str:
    """Identifier tokens of a practitioner: the national id and the RPPS/ADELI inside it."""
    return f"{nz.IDENTIFIER}{national_id} {nz.IDENTIFIER}{national_id[1:]}"


_SITE_CHECKS: tuple[tuple[int, Callable[[str], idchecks.Problem]], ...] = (
    (P.SIRET, idchecks.siret),
    (P.SIREN, idchecks.siren),
    (P.FINESS_SITE, idchecks.finess),
    (P.FINESS_LEGAL, idchecks.finess),
)


@lru_cache(maxsize=1 << 14)
def site_problems(siret: str, siren: str, finess_site: str, finess_legal: str) -> bool:
    """Whether any of a site's identifiers has a problem (details: ``_line_problems``)."""
    return any(
        v and check(v) is not None
        for v, (_, check) in zip((siret, siren, finess_site, finess_legal), _SITE_CHECKS,
                                 strict=True)
    )


class PersonParser:
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
        """Report a problem; return True when it rejects the line."""
        warning = key and self.lenient
        self.on_issue(
            Issue(
                self.label, line, PERSON_COLUMNS[col], message, value,
                Severity.WARNING if warning else Severity.ERROR,
            )
        )
        return not warning

    def rows(self, lines: Iterable[tuple[int, str]], seq_base: int = 0) -> Iterator[PersonRow]:
        """Staging rows; their first field is ``seq_base | line number``."""
        width = self.header.width
        ncols = len(PERSON_COLUMNS)
        canonical = self.header.canonical
        positions = self.header.positions
        known = PROFESSIONS
        check_id = idchecks.national_id
        check_site = site_problems
        terms_of = activity_terms
        names_of = nz.name_terms
        blake2b = hashlib.blake2b
        from_bytes = int.from_bytes
        sep = SEPARATOR
        start = P.ACTIVITY_START
        i_type, i_pp, i_nat, i_last, i_first = (
            P.ID_TYPE, P.ID_PP, P.NATIONAL_ID, P.LAST_NAME, P.FIRST_NAME
        )
        i_prof, i_spec, i_town, i_cp, i_dept = (
            P.PROFESSION, P.SPECIALTY, P.TOWN, P.POSTCODE, P.DEPARTEMENT
        )
        i_siret, i_legal = P.SIRET, P.FINESS_LEGAL
        prev_nat = ""
        n = 0
        for lineno, text in lines:
            if not text:
                continue
            n += 1
            f = text.split(sep)
            if len(f) != width or f[-1]:
                self._width_problem(lineno, f, width)
                continue
            if not canonical:
                f = [f[p] for p in positions]
                f.append("")
            nat = f[i_nat]
            new = nat != prev_nat
            prof = f[i_prof]
            site = f[i_siret : i_legal + 1]
            if (
                (new and check_id(f[i_type], f[i_pp], nat) is not None)
                or prof not in known
                or not f[i_last].strip()
                or (any(site) and check_site(*site))
            ) and self._line_problems(lineno, f, new):
                self.rejected += 1
                continue
            key = int(nat)
            if new:
                prev_nat = nat
                person_raw: str | None = sep.join(f[:start])
                names: str | None = names_of(f[i_last], f[i_first])
                national: str | None = nat
            else:
                person_raw = names = national = None
            act_raw = sep.join(f[start:ncols])
            yield (
                seq_base | lineno, key, national, person_raw, names,
                from_bytes(blake2b(act_raw.encode(), digest_size=8).digest(), "big", signed=True),
                act_raw,
                terms_of(prof, f[i_spec], f[i_town], f[i_cp], f[i_dept]),
            )
        self.lines += n

    def _line_problems(self, lineno: int, f: list[str], new: bool) -> bool:
        """Report every problem of a line; return True when the line must be skipped."""
        bad = False
        if new:
            problem = idchecks.national_id(f[P.ID_TYPE], f[P.ID_PP], f[P.NATIONAL_ID])
            if problem is not None:
                col = P.NATIONAL_ID if "national" in problem[0] else P.ID_PP
                if f[P.ID_TYPE] not in ("0", "8"):
                    col = P.ID_TYPE
                bad |= self._issue(lineno, col, problem[0], f[col], key=problem[1])
        if not f[P.LAST_NAME].strip():
            bad |= self._issue(lineno, P.LAST_NAME, "required value missing", "", key=False)
        prof = f[P.PROFESSION]
        if prof not in PROFESSIONS:
            msg = "unknown profession code" if prof else "required value missing"
            bad |= self._issue(lineno, P.PROFESSION, msg, prof, key=False)
        for col, check in _SITE_CHECKS:
            v = f[col]
            if v:
                problem = check(v)
                if problem is not None:
                    bad |= self._issue(lineno, col, problem[0], v, key=problem[1])
        return bad

    def _width_problem(self, lineno: int, f: list[str], width: int) -> None:
        self.rejected += 1
        self.on_issue(width_issue(self.label, lineno, f, width, PERSON_COLUMNS))


def width_issue(
    label: str, lineno: int, f: list[str], width: int, columns: tuple[str, ...]
) -> Issue:
    """The problem of a line that does not split into ``width`` fields ending with ``|``."""
    ncols = width - 1
    found = len(f) - 1
    if found == ncols:
        return Issue(label, lineno, columns[-1], "text after the final «|»", f[-1][:40])
    if found < ncols:
        return Issue(
            label, lineno, columns[max(found, 0)],
            f"missing: the line has {found} «|» separators, expected {ncols} "
            "(every line ends with «|»)",
        )
    return Issue(
        label, lineno, "-",
        f"too many fields: the line has {found} «|» separators, expected {ncols}",
    )
