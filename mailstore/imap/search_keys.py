"""Search keys (RFC 3501 §6.4.4, RFC 9051 §6.4.4, MODSEQ from RFC 7162 §3.1.5).

The parser builds a small tree; :mod:`mailstore.imap_search` evaluates it. ``NEW``,
``OLD`` and the ``UN*`` keys are expressed with :class:`FlagKey` / :class:`Not` / :class:`And`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import date

from mailstore.imap.errors import CommandNo
from mailstore.imap.lexer import MAX_NUMBER64, Cursor
from mailstore.imap.seqset import SeqSet


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class FlagKey:
    """The message has ``flag`` (a system flag, ``\\Recent`` or a keyword)."""

    flag: str


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """``field`` contains ``value`` (decoded, case-insensitive); ``""`` tests presence."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """BODY (``body_only``) or TEXT (header and body) contains ``value``."""

    value: str
    body_only: bool


@dataclass(frozen=True, slots=True)
class DateKey:
    """``sent`` uses the Date header, else the internal date; ``op`` is before/on/since."""

    op: str
    day: date
    sent: bool


@dataclass(frozen=True, slots=True)
class SizeKey:
    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SetKey:
    seqset: SeqSet
    uid: bool


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    modseq: int


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


SearchKey = (
    All | FlagKey | HeaderKey | TextKey | DateKey | SizeKey | SetKey | ModSeqKey | Not | Or | And
)

_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True),
    b"DELETED": ("\\Deleted", True),
    b"DRAFT": ("\\Draft", True),
    b"FLAGGED": ("\\Flagged", True),
    b"RECENT": ("\\Recent", True),
    b"SEEN": ("\\Seen", True),
    b"UNANSWERED": ("\\Answered", False),
    b"UNDELETED": ("\\Deleted", False),
    b"UNDRAFT": ("\\Draft", False),
    b"UNFLAGGED": ("\\Flagged", False),
    b"UNSEEN": ("\\Seen", False),
    b"OLD": ("\\Recent", False),
}
_HEADER_KEYS = {b"BCC": "bcc", b"CC": "cc", b"FROM": "from", b"SUBJECT": "subject", b"TO": "to"}
_DATE_KEYS = {
    b"BEFORE": ("before", False),
    b"ON": ("on", False),
    b"SINCE": ("since", False),
    b"SENTBEFORE": ("before", True),
    b"SENTON": ("on", True),
    b"SENTSINCE": ("since", True),
}

#: Charsets SEARCH accepts (RFC 3501 §6.4.4 requires US-ASCII; RFC 9051 UTF-8).
SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")


def check_charset(name: str) -> str:
    upper = name.upper()
    try:
        codec = codecs.lookup(upper).name
    except LookupError:
        codec = ""
    if upper in SUPPORTED_CHARSETS or codec in ("utf-8", "ascii"):
        return upper
    raise CommandNo(
        f"charset {name} is not supported", b"BADCHARSET (" + b" ".join(
            c.encode() for c in SUPPORTED_CHARSETS) + b")"
    )


class _KeyParser:
    def __init__(self, cur: Cursor, charset: str) -> None:
        self.cur = cur
        self.charset = charset
        self.depth = 0

    def text(self) -> str:
        raw = self.cur.astring("a search string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.cur.error(f"search string is not valid {self.charset}") from None

    def program(self) -> SearchKey:
        keys = [self.key()]
        while self.cur.peek() == 0x20:
            self.cur.sp()
            keys.append(self.key())
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def key(self) -> SearchKey:
        cur = self.cur
        b = cur.peek()
        if b == 0x28:  # "(" search-key *(SP search-key) ")"
            self.depth += 1
            if self.depth > 50:
                raise cur.error("search program nested too deeply")
            cur.pos += 1
            keys = [self.key()]
            while cur.peek() == 0x20:
                cur.sp()
                keys.append(self.key())
            cur.expect(b")")
            self.depth -= 1
            return keys[0] if len(keys) == 1 else And(tuple(keys))
        if b == 0x2A or b == 0x24 or 0x30 <= b <= 0x39:  # "*", "$" or a digit
            return SetKey(SeqSet.parse(cur), uid=False)
        word = cur.atom("a search key").upper()
        if word == b"ALL":
            return All()
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return FlagKey(flag) if present else Not(FlagKey(flag))
        if word == b"NEW":
            return And((FlagKey("\\Recent"), Not(FlagKey("\\Seen"))))
        if word in (b"KEYWORD", b"UNKEYWORD"):
            cur.sp()
            flag = cur.flag()
            return FlagKey(flag) if word == b"KEYWORD" else Not(FlagKey(flag))
        if word in _HEADER_KEYS:
            cur.sp()
            return HeaderKey(_HEADER_KEYS[word], self.text())
        if word == b"HEADER":
            cur.sp()
            name = cur.astring("a header field name").decode("ascii", "replace").lower()
            cur.sp()
            return HeaderKey(name, self.text())
        if word in (b"BODY", b"TEXT"):
            cur.sp()
            return TextKey(self.text(), body_only=word == b"BODY")
        if word in _DATE_KEYS:
            op, sent = _DATE_KEYS[word]
            cur.sp()
            return DateKey(op, cur.search_date(), sent)
        if word in (b"LARGER", b"SMALLER"):
            cur.sp()
            return SizeKey(word == b"LARGER", cur.number(maximum=MAX_NUMBER64, what="a size"))
        if word == b"UID":
            cur.sp()
            return SetKey(SeqSet.parse(cur), uid=True)
        if word == b"NOT":
            cur.sp()
            return Not(self.key())
        if word == b"OR":
            cur.sp()
            left = self.key()
            cur.sp()
            return Or(left, self.key())
        if word == b"MODSEQ":
            # RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
            cur.sp()
            if cur.peek() == 0x22:
                cur.quoted()
                cur.sp()
                cur.atom("an entry type (priv, shared or all)")
                cur.sp()
            return ModSeqKey(cur.number(maximum=MAX_NUMBER64, what="a mod-sequence"))
        raise cur.error(f"unknown search key {word.decode('ascii', 'replace')}")


def parse_search_program(cur: Cursor, charset: str = "US-ASCII") -> SearchKey:
    return _KeyParser(cur, charset).program()


def uses_modseq(key: SearchKey) -> bool:
    """Whether a MODSEQ criterion appears (RFC 7162 §3.1.5 adds ``(MODSEQ n)`` to the reply)."""
    if isinstance(key, ModSeqKey):
        return True
    if isinstance(key, Not):
        return uses_modseq(key.key)
    if isinstance(key, Or):
        return uses_modseq(key.left) or uses_modseq(key.right)
    if isinstance(key, And):
        return any(uses_modseq(k) for k in key.keys)
    return False
