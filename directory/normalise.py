"""Folding text for search: accents, case, hyphens and spaces (issue 6, «Search»).

Every search term is computed here, in Python, and stored as a space-separated string of
ASCII tokens ``[a-z0-9]+``. The database only matches tokens and prefixes of tokens (SQLite
FTS5, PostgreSQL ``tsvector``), so both backends see exactly the same tokens and return
exactly the same results.

Name tokens are letters only. Every other kind of term starts with a digit and a letter
(its *namespace*), so a name prefix such as ``ly`` can never match a town token ``0tlyon``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

#: Namespaces of the non-name terms (a digit then a letter; names never contain digits).
TOWN = "0t"
POSTCODE = "1c"
DEPARTEMENT = "2d"
PROFESSION = "3p"
SPECIALTY = "4s"
IDENTIFIER = "5n"
ADDRESS = "6m"
KIND = "7k"

#: Kinds of search document (the ``7k`` terms).
KIND_PRACTITIONER = "pra"

_NON_TOKEN = re.compile(r"[^a-z0-9]+")
_LETTERS_ONLY = re.compile(r"[^a-z]+")

#: Letters NFKD does not decompose into an ASCII letter and accents.
_SPECIAL = {"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_SPECIAL_RE = re.compile("[" + "".join(_SPECIAL) + "]")


def _special(m: re.Match[str]) -> str:
    return _SPECIAL[m.group()]


#: Every ASCII character that is not ``[a-z0-9]`` (applied after case folding): what
#: ``_NON_TOKEN`` matches, as tables for :meth:`bytes.translate` (much faster than the
#: regular expression, or :meth:`str.translate`, on these short strings).
_NON_TOKEN_BYTES = bytes(c for c in range(128) if _NON_TOKEN.fullmatch(chr(c)))
_TO_SPACE = bytes(32 if c in _NON_TOKEN_BYTES else c for c in range(256))


def _ascii(text: str) -> bytes:
    """Case-folded ASCII: accents dropped, the few letters NFKD keeps whole spelt out."""
    t = text.casefold()
    if t.isascii():
        return t.encode("ascii")
    if _SPECIAL_RE.search(t):
        t = _SPECIAL_RE.sub(_special, t)
    return unicodedata.normalize("NFKD", t).encode("ascii", "ignore")


def fold(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: «Le-Fèvre» → ``le fevre``."""
    return " ".join(words(text))


def words(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _ascii(text).translate(_TO_SPACE).decode("ascii").split()


def compact(text: str) -> str:
    """The folded letters of ``text`` without separators: «LE FEVRE» → ``lefevre``."""
    return _ascii(text).translate(None, _NON_TOKEN_BYTES).decode("ascii")


def letters(word: str) -> str:
    """Only the letters of an already folded word (name terms never hold digits)."""
    return _LETTERS_ONLY.sub("", word)


@lru_cache(maxsize=1 << 15)
def _name_part(part: str) -> tuple[str, tuple[str, ...]]:
    """(compact form, single words) of one name, letters only."""
    ws = tuple(w for w in (letters(w) for w in words(part)) if w)
    return "".join(ws), ws


def name_terms(*parts: str) -> str:
    """Name tokens of a person or a structure, starting with its sort key.

    The first tokens are the compact form of each part (``lefevre``, ``jeanpierre``), so
    ordering by this string orders by last name then first name whatever the spelling
    variant; the single words of multi-word parts follow (``le``, ``fevre``, ``jean``,
    ``pierre``), each once.
    """
    compacts: list[str] = []
    extra: list[str] = []
    for p in parts:
        c, ws = _name_part(p)
        if c:
            compacts.append(c)
        if len(ws) > 1:
            extra.extend(ws)
    head = " ".join(compacts)
    if not extra:
        return head
    seen = set(compacts)
    tail = []
    for w in extra:
        if w not in seen:
            seen.add(w)
            tail.append(w)
    return f"{head} {' '.join(tail)}" if tail else head


@lru_cache(maxsize=8192)
def town_terms(town: str) -> str:
    """Town tokens: each word and the compact form, in the town namespace."""
    c, ws = _name_part(town)
    tokens = [*ws, c] if len(ws) > 1 else list(ws)
    return " ".join(TOWN + t for t in tokens)


def address_term(address: str) -> str:
    """The address token: its folded characters without separators, namespaced."""
    c = compact(address)
    return ADDRESS + c if c else ""


@lru_cache(maxsize=1 << 14)
def code_term(namespace: str, code: str) -> str:
    """A code (profession, specialty, postcode, département, identifier) as one token."""
    c = compact(code)
    return namespace + c if c else ""


@lru_cache(maxsize=16384)
def location_terms(town: str, postcode: str, departement: str) -> str:
    """Town, postcode and département tokens of one practice site."""
    parts = [town_terms(town), code_term(POSTCODE, postcode), code_term(DEPARTEMENT, departement)]
    return " ".join(p for p in parts if p)


def join_terms(*parts: str) -> str:
    return " ".join(p for p in parts if p)
