"""Identifier checks for the importer, on top of :mod:`policy.identifiers`.

The importer needs to tell a malformed value (always an error: the line is skipped) from a
well-formed value whose check digit is wrong: real Annuaire Santé values pass the Luhn
check, but fictitious example values in specifications do not (DOMAIN.md §3), and the FINESS
and ADELI keys are only *probably* Luhn. In lenient mode a wrong key is a warning (the line is
imported and the problem listed in the report); otherwise it is an error.

Results are memoised: the same site (SIRET, FINESS) appears on many lines.
"""

from __future__ import annotations

from functools import lru_cache

from policy import identifiers as ids

#: (message, is_key_problem) — None when the value is valid.
Problem = tuple[str, bool] | None


def _split(format_problem: str | None, full_problem: str | None) -> Problem:
    if format_problem:
        return (format_problem, False)
    if full_problem:
        return (full_problem, True)
    return None


#: Luhn doubling of one digit, as a byte translation: d → 2d, minus 9 when above 9.
_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_valid(digits: str) -> bool:
    """:func:`policy.identifiers.luhn_valid` for ASCII digit strings, at C speed.

    The same result (a property test checks it); the importer calls it on every line.
    """
    b = digits.encode("ascii")
    n = len(b)
    if n < 2:
        return ids.luhn_valid(digits)
    plain = b[n - 1 :: -2]
    doubled = b[n - 2 :: -2].translate(_DOUBLE)
    return (sum(plain) + sum(doubled) - 48 * n) % 10 == 0


def national_id_ok(id_type: str, id_pp: str, national: str) -> bool:
    """``national_id(...) is None`` in the common case, decided without building any message
    (False: ask :func:`national_id` what is wrong, if anything)."""
    length = 11 if id_type == "8" else 9 if id_type == "0" else 0
    return (
        len(id_pp) == length and id_pp.isascii() and id_pp.isdigit()
        and luhn_valid(id_pp) and len(national) == length + 1
        and national[0] == id_type and national.endswith(id_pp)
    )


def national_id(id_type: str, id_pp: str, national: str) -> Problem:
    """The three identifier columns of a practitioner (type, RPPS/ADELI, national id)."""
    if national_id_ok(id_type, id_pp, national):
        return None
    if id_type == "8":
        problem = _split(ids.check_rpps(id_pp, lenient=True), ids.check_rpps(id_pp))
    elif id_type == "0":
        problem = _split(ids.check_adeli(id_pp, lenient=True), ids.check_adeli(id_pp))
    else:
        return ("identifier type must be 8 (RPPS) or 0 (ADELI)", False)
    if problem and not problem[1]:
        return problem
    if national != id_type + id_pp:
        return ("national identifier must be the type followed by the identifier", False)
    return problem


def siret_ok(value: str) -> bool:
    """``siret(value) is None``, decided without building any message."""
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        return False
    # La Poste's establishments: the sum of the digits is a multiple of 5 (the bytes of
    # 14 ASCII digits add up to 48 × 14 more than the digits)
    if value.startswith("356000000") and (sum(value.encode()) - 48 * 14) % 5 == 0:
        return True
    return luhn_valid(value)


def siren_ok(value: str) -> bool:
    """``siren(value) is None``, decided without building any message."""
    return len(value) == 9 and value.isascii() and value.isdigit() and luhn_valid(value)


def finess_ok(value: str) -> bool:
    """``finess(value) is None``, decided without building any message."""
    if len(value) != 9 or not value.isascii() or not value[2:].isdigit():
        return False
    head = value[:2]
    if head.isdigit():
        return luhn_valid(value)
    return head.upper() in ("2A", "2B") and luhn_valid("20" + value[2:])


@lru_cache(maxsize=4096)
def finess(value: str) -> Problem:
    return _split(ids.check_finess(value, lenient=True), ids.check_finess(value))


def _digits_problem(value: str, length: int, name: str) -> str | None:
    if len(value) != length or not value.isascii() or not value.isdigit():
        return f"{name} must be {length} digits"
    return None


@lru_cache(maxsize=4096)
def siret(value: str) -> Problem:
    return _split(_digits_problem(value, 14, "SIRET"), ids.check_siret(value))


@lru_cache(maxsize=4096)
def siren(value: str) -> Problem:
    return _split(_digits_problem(value, 9, "SIREN"), ids.check_siren(value))


def national_id_of(value: str) -> str | None:
    """Accept an RPPS (11 digits), an ADELI (9 digits) or a national identifier; return the
    national identifier (``8``+RPPS / ``0``+ADELI), or None when the form is wrong."""
    v = value.strip()
    if not v.isascii() or not v.isdigit():
        return None
    if len(v) == 11:
        return "8" + v
    if len(v) == 9:
        return "0" + v
    if (len(v) == 12 and v[0] == "8") or (len(v) == 10 and v[0] == "0"):
        return v
    return None


def practitioner_key(national: str) -> int:
    """The integer primary key of a practitioner: its national identifier read as a number.

    ``8`` + RPPS gives 12 digits (≥ 8·10¹¹); ``0`` + ADELI a number below 10¹⁰: no collision.
    """
    return int(national)
