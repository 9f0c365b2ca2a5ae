"""Validating the lines of ``PS_LibreAcces_Personne_activite_*.txt`` (DOMAIN.md §4).

One line = one practitioner *activity*. A valid line becomes one staging row::

    (line, practitioner_key, national_id, person_raw, name_terms, act_key, act_raw, terms)

where the three practitioner fields (``national_id``, ``person_raw``, ``name_terms``) are only
filled on the first line of a run of lines of the same practitioner (``None`` afterwards:
less to bind and store). Lines are published grouped by practitioner; a practitioner listed
in two separate runs is staged twice and the merge keeps the first.

This is the import's hot loop (:meth:`PersonParser.block_rows`).
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
#: Lines given as blocks: (number of the first line, the lines).
Blocks = Iterable[tuple[int, list[str]]]
#: Memoised values are forgotten past this many (memory stays bounded on any file).
CACHE_LIMIT = 1 << 15


def activity_key(act_raw: str) -> int:
    """A signed 64-bit hash of an activity's fields (its identity across imports)."""
    return int.from_bytes(
        hashlib.blake2b(act_raw.encode(), digest_size=8).digest(), "big", signed=True
    )


def activity_terms(profession: str, specialty: str, town: str, postcode: str, dept: str) -> str:
    return nz.join_terms(_code_terms(profession, specialty),
                         nz.location_terms(town, postcode, dept))


@lru_cache(maxsize=4096)
def _code_terms(profession: str, specialty: str) -> str:
    return nz.join_terms(nz.code_term(nz.PROFESSION, profession),
                         nz.code_term(nz.SPECIALTY, specialty))


def practitioner_terms(national_id: str) -> str:
    """Identifier tokens of a practitioner: the national id and the RPPS/ADELI inside it."""
    return f"{nz.IDENTIFIER}{national_id} {nz.IDENTIFIER}{national_id[1:]}"


_SITE_CHECKS: tuple[tuple[int, Callable[[str], idchecks.Problem]], ...] = (
    (P.SIRET, idchecks.siret),
    (P.SIREN, idchecks.siren),
    (P.FINESS_SITE, idchecks.finess),
    (P.FINESS_LEGAL, idchecks.finess),
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

    def block_rows(self, blocks: Blocks, seq_base: int = 0) -> Iterator[PersonRow]:
        """Staging rows of blocks of consecutive lines (:meth:`RangeReader.blocks`); their
        first field is ``seq_base | line number``.

        The import's hot loop: one ``split`` a line, checks memoised by value (a site's
        SIRET and FINESS recur on many lines, so do towns), the practitioner's fields only
        on its first line, and the records cut out of the line as it is.
        """
        width = self.header.width
        canonical = self.header.canonical
        positions = self.header.positions
        known = PROFESSIONS
        fast_id = idchecks.national_id_ok
        siret_ok, siren_ok, finess_ok = idchecks.siret_ok, idchecks.siren_ok, idchecks.finess_ok
        good_siret: set[str] = set()
        good_siren: set[str] = set()
        good_finess: set[str] = set()
        code_terms = _code_terms
        location_terms = nz.location_terms
        places: dict[tuple[str, str, str], str] = {}
        names_of = nz.name_terms
        blake2b = hashlib.blake2b
        from_bytes = int.from_bytes
        sep = SEPARATOR
        i_type, i_pp, i_nat, i_last, i_first = (
            P.ID_TYPE, P.ID_PP, P.NATIONAL_ID, P.LAST_NAME, P.FIRST_NAME
        )
        i_prof, i_spec, i_town, i_cp, i_dept = (
            P.PROFESSION, P.SPECIALTY, P.TOWN, P.POSTCODE, P.DEPARTEMENT
        )
        i_siret, i_siren, i_fin, i_fin_legal = P.SIRET, P.SIREN, P.FINESS_SITE, P.FINESS_LEGAL
        head = slice(0, P.ACTIVITY_START)
        prev_nat = prefix = ""
        key = n = 0
        for first, block in blocks:
            lineno = first - 1
            for text in block:
                lineno += 1
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
                    text = sep.join(f)
                nat = f[i_nat]
                new = nat != prev_nat
                prof = f[i_prof]
                ok = (
                    (not new or fast_id(f[i_type], f[i_pp], nat))
                    and prof in known
                    and f[i_last].strip() != ""
                )
                if ok:
                    v = f[i_siret]
                    if v and v not in good_siret:
                        if siret_ok(v):
                            if len(good_siret) >= CACHE_LIMIT:
                                good_siret.clear()
                            good_siret.add(v)
                        else:
                            ok = False
                    v = f[i_siren]
                    if v and v not in good_siren:
                        if siren_ok(v):
                            if len(good_siren) >= CACHE_LIMIT:
                                good_siren.clear()
                            good_siren.add(v)
                        else:
                            ok = False
                    for v in (f[i_fin], f[i_fin_legal]):
                        if v and v not in good_finess:
                            if finess_ok(v):
                                if len(good_finess) >= CACHE_LIMIT:
                                    good_finess.clear()
                                good_finess.add(v)
                            else:
                                ok = False
                if not ok and self._line_problems(lineno, f, new):
                    self.rejected += 1
                    continue
                # the records: the practitioner's columns, and the activity's (the rest of
                # the line without its trailing separator)
                if new:
                    prev_nat, key = nat, int(nat)
                    prefix = sep.join(f[head]) + sep
                    start = len(prefix)
                    person_raw: str | None = prefix[:-1]
                    names: str | None = names_of(f[i_last], f[i_first])
                    national: str | None = nat
                else:
                    person_raw = names = national = None
                    # usually the same practitioner's columns as the line before
                    start = (len(prefix) if text.startswith(prefix)
                             else sum(map(len, f[head])) + P.ACTIVITY_START)
                act_raw = text[start:-1]
                place = (f[i_town], f[i_cp], f[i_dept])
                where = places.get(place)
                if where is None:
                    if len(places) >= CACHE_LIMIT:
                        places.clear()
                    where = places[place] = location_terms(*place)
                what = code_terms(prof, f[i_spec])
                yield (
                    seq_base | lineno, key, national, person_raw, names,
                    from_bytes(blake2b(act_raw.encode(), digest_size=8).digest(), "big",
                               signed=True),
                    act_raw,
                    f"{what} {where}" if what and where else what or where,
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
