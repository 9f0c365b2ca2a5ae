"""LIST and LSUB answers (RFC 3501 §6.3.8-9, LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
CHILDREN RFC 3348, RFC 9051 §6.3.9). Pure: mailbox records in, response lines out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailstore.folders import SEPARATOR, MailboxInfo
from mailstore.imap import formatter, mutf7


@dataclass(slots=True)
class ListEntry:
    name: str
    exists: bool
    subscribed: bool
    special_use: str | None
    has_children: bool = False
    #: RFC 5258 §3.5 CHILDINFO: a descendant matches the selection (RECURSIVEMATCH).
    child_subscribed: bool = False
    attrs: list[str] = field(default_factory=list)


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """``*`` matches anything, ``%`` anything but the separator (RFC 3501 §6.3.8)."""
    full = pattern if pattern.startswith(SEPARATOR) else reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in (SEPARATOR, "*", "%")):
        full = "INBOX" + full[5:]
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(SEPARATOR)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _tree(boxes: Iterable[MailboxInfo]) -> dict[str, ListEntry]:
    entries: dict[str, ListEntry] = {}
    for box in boxes:
        entries[box.name] = ListEntry(box.name, True, box.subscribed, box.special_use)
    for name in list(entries):
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:depth])
            if parent not in entries:
                entries[parent] = ListEntry(parent, False, False, None)
    for name, entry in entries.items():
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            above = entries[SEPARATOR.join(parts[:depth])]
            above.has_children = True
            if entry.subscribed:
                above.child_subscribed = True
    return entries


def list_entries(
    boxes: Sequence[MailboxInfo],
    reference: str,
    patterns: Sequence[str],
    *,
    selection: frozenset[str] = frozenset(),
    returns: frozenset[str] = frozenset(),
    lsub: bool = False,
) -> list[ListEntry]:
    """The entries to answer, in name order, with their attributes filled in."""
    entries = _tree(boxes)
    regexes = [pattern_regex(reference, p) for p in patterns if p != ""]
    subscribed_only = lsub or "SUBSCRIBED" in selection
    recursive = "RECURSIVEMATCH" in selection or lsub
    out: list[ListEntry] = []
    for name in sorted(entries, key=lambda n: (n != "INBOX", n)):
        entry = entries[name]
        if not any(r.fullmatch(name) for r in regexes):
            continue
        if "SPECIAL-USE" in selection and not entry.special_use:
            continue
        if subscribed_only and not entry.subscribed and not (recursive and entry.child_subscribed):
            continue
        attrs: list[str] = []
        if not entry.exists:
            attrs.append("\\Noselect" if lsub or not subscribed_only else "\\NonExistent")
        if not lsub:
            attrs.append("\\HasChildren" if entry.has_children else "\\HasNoChildren")
        elif not entry.subscribed:
            attrs.append("\\Noselect")
        if entry.special_use and not lsub:
            attrs.append(entry.special_use)
        if entry.subscribed and not lsub and ("SUBSCRIBED" in returns or subscribed_only):
            attrs.append("\\Subscribed")
        entry.attrs = list(dict.fromkeys(attrs))
        out.append(entry)
    return out


def encode_name(name: str, *, utf8: bool) -> bytes:
    return name.encode("utf-8") if utf8 else mutf7.encode(name)


def render_entry(
    entry: ListEntry, *, command: str, utf8: bool, selection: frozenset[str] = frozenset()
) -> bytes:
    """``* LIST (attrs) "/" name [("CHILDINFO" ("SUBSCRIBED"))]``."""
    name = formatter.astring(encode_name(entry.name, utf8=utf8), utf8=utf8)
    line = (
        command.encode() + b" (" + " ".join(entry.attrs).encode() + b') "'
        + SEPARATOR.encode() + b'" ' + name
    )
    if (
        command == "LIST" and "RECURSIVEMATCH" in selection and "SUBSCRIBED" in selection
        and entry.child_subscribed
    ):
        line += b' ("CHILDINFO" ("SUBSCRIBED"))'
    return formatter.untagged(line)


def separator_line(command: str) -> bytes:
    """RFC 3501 §6.3.8: ``LIST "" ""`` returns the hierarchy delimiter and root."""
    return formatter.untagged(command.encode() + b' (\\Noselect) "' + SEPARATOR.encode() + b'" ""')
