"""Checks of the French health identifiers (DOMAIN.md §3). Pure functions.

Each ``check_*`` function returns ``None`` when the value is valid, or a short English
explanation of what is wrong, so callers can name the problem precisely
(``FILE:LINE: column «NAME»: <explanation> (value)``).
"""

from __future__ import annotations

#: OIDs of the identifier systems.
OID_NATIONAL_PRACTITIONER = "1.2.250.1.71.4.2.1"
OID_INS_NIR = "1.2.250.1.213.1.4.8"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise ValueError(partial)  # pragma: no cover - one digit always fits


def _digits(value: str, length: int, name: str) -> str | None:
    if len(value) != length or not value.isascii() or not value.isdigit():
        return f"{name} must be {length} digits"
    return None


def check_rpps(value: str, *, lenient: bool = False) -> str | None:
    """RPPS: 11 digits, Luhn over the 11 digits (``lenient`` skips the key)."""
    problem = _digits(value, 11, "RPPS")
    if problem:
        return problem
    if not lenient and not luhn_valid(value):
        return "RPPS check digit is wrong (Luhn)"
    return None


def check_adeli(value: str, *, lenient: bool = False) -> str | None:
    """ADELI: 9 digits, the first two the département; Luhn (probable, DOMAIN.md §3)."""
    problem = _digits(value, 9, "ADELI")
    if problem:
        return problem
    if not lenient and not luhn_valid(value):
        return "ADELI check digit is wrong (Luhn)"
    return None


def check_national_practitioner_id(value: str, *, lenient: bool = False) -> str | None:
    """``8`` + RPPS (12 characters) or ``0`` + ADELI (10 characters)."""
    if value.startswith("8") and len(value) == 12:
        return check_rpps(value[1:], lenient=lenient)
    if value.startswith("0") and len(value) == 10:
        return check_adeli(value[1:], lenient=lenient)
    return "national identifier must be 8+RPPS (12 characters) or 0+ADELI (10 characters)"


def check_finess(value: str, *, lenient: bool = False) -> str | None:
    """FINESS: 9 characters, département prefix (``2A``/``2B`` in Corsica), Luhn (probable).

    For the Luhn check, ``2A`` and ``2B`` are read as ``20``, as the FINESS register does.
    """
    if len(value) != 9 or not value.isascii():
        return "FINESS must be 9 characters"
    head, tail = value[:2], value[2:]
    if not tail.isdigit() or not (head.isdigit() or head.upper() in ("2A", "2B")):
        return "FINESS must be digits after a département prefix (2A/2B allowed)"
    if not lenient and not luhn_valid(("20" if not head.isdigit() else head) + tail):
        return "FINESS check digit is wrong (Luhn)"
    return None


def check_siret(value: str) -> str | None:
    problem = _digits(value, 14, "SIRET")
    if problem:
        return problem
    # La Poste's establishments use a sum-of-digits rule instead of Luhn.
    if value.startswith("356000000") and sum(int(c) for c in value) % 5 == 0:
        return None
    if not luhn_valid(value):
        return "SIRET check digit is wrong (Luhn)"
    return None


def check_siren(value: str) -> str | None:
    problem = _digits(value, 9, "SIREN")
    if problem:
        return problem
    if not luhn_valid(value):
        return "SIREN check digit is wrong (Luhn)"
    return None


def _nir_number(first13: str) -> int | None:
    """The 13-character NIR body as an integer, Corsica's ``2A``/``2B`` read as 19/18."""
    dept = first13[5:7].upper()
    if dept == "2A":
        body = first13[:5] + "19" + first13[7:]
    elif dept == "2B":
        body = first13[:5] + "18" + first13[7:]
    else:
        body = first13
    if not body.isascii() or not body.isdigit():
        return None
    return int(body)


def nir_key(first13: str) -> int:
    """The 2-digit key of a NIR: 97 − (first 13 digits mod 97)."""
    number = _nir_number(first13)
    if number is None:
        raise ValueError("NIR body must be 13 digits (2A/2B allowed for the département)")
    return 97 - number % 97


def check_ins(value: str) -> str | None:
    """INS matricule / NIR: 15 characters, the last two a key over the first 13."""
    if len(value) != 15 or not value.isascii():
        return "INS must be 15 characters"
    if value[0] not in "12378":
        return "INS must start with the sex digit (1, 2, 3, 7 or 8)"
    number = _nir_number(value[:13])
    if number is None:
        return "INS must be digits (2A/2B allowed for the département)"
    if not value[13:].isdigit():
        return "INS key must be 2 digits"
    if int(value[13:]) != 97 - number % 97:
        return "INS key is wrong"
    return None
