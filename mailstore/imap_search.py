"""SEARCH over a mailbox (RFC 3501 §6.4.4, RFC 9051 §6.4.4, MODSEQ RFC 7162 §3.1.5).

Evaluation has two passes, in Kleene three-valued logic: first with what the ``message``
rows say (flags, dates, sizes, UIDs) — a key that needs the index or the text is
*unknown* — so most messages are decided without decrypting anything; then the messages
still undecided are loaded (index and/or bytes, in batches) and decided.

String matching is case-insensitive (Unicode lower case) on decoded text: header fields as
decoded at delivery (RFC 2047), bodies with their transfer encoding and charset removed.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from mailstore.imap.errors import CommandNo
from mailstore.imap.search_keys import (
    All,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    TextKey,
)
from mailstore.imap.sections import decode_transfer
from mailstore.imap_messages import Loaded, load_messages, message_rows
from mailstore.keystore import KeyStore
from mailstore.mime_headers import bytes_to_text

BATCH = 400
_TAG = re.compile(r"<[^>]*>")


@dataclass
class SearchContext:
    """What the session knows: its UIDs in sequence order, \\Recent, the saved result."""

    uids: Sequence[int]
    recent: frozenset[int] = frozenset()
    saved: Sequence[int] = ()
    _sets: dict[int, frozenset[int]] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)

    def folded(self, text: str) -> str:
        """``text.lower()`` (Unicode case mapping), computed once per search string."""
        found = self._folded.get(text)
        if found is None:
            found = self._folded[text] = text.lower()
        return found

    def in_set(self, key: SetKey, uid: int) -> bool:
        members = self._sets.get(id(key))
        if members is None:
            if key.seqset.saved:
                members = frozenset(self.saved)
            elif key.uid:
                members = frozenset(self.uids[i] for i in key.seqset.select_sorted(self.uids))
            else:
                members = frozenset(
                    self.uids[n - 1] for n in key.seqset.select_seqnums(len(self.uids))
                )
            self._sets[id(key)] = members
        return uid in members


def needs(key: SearchKey) -> tuple[bool, bool]:
    """Whether evaluating ``key`` needs the index (meta) and the message bytes."""
    if isinstance(key, HeaderKey):
        return True, False
    if isinstance(key, DateKey):
        return key.sent, False
    if isinstance(key, TextKey):
        return True, True
    if isinstance(key, Not):
        return needs(key.key)
    if isinstance(key, Or):
        a, b = needs(key.left), needs(key.right)
        return a[0] or b[0], a[1] or b[1]
    if isinstance(key, And):
        parts = [needs(k) for k in key.keys]
        return any(p[0] for p in parts), any(p[1] for p in parts)
    return False, False


def _contains(haystack: str, folded_needle: str) -> bool:
    return folded_needle in haystack.lower()


#: Charsets in which an ASCII string is encoded as itself.
_ASCII_COMPATIBLE = re.compile(r"(us-)?ascii|utf-?8|iso-?8859-\d+|(windows|cp)-?125\d|latin-?\d")


def text_contains(raw: bytes, tree: dict[str, Any], needle: str) -> bool:
    """Whether a text part contains ``needle`` (already lower-case).

    An ASCII needle is searched in the decoded bytes of parts whose charset encodes ASCII
    as itself, without decoding them to text (``bytes.lower`` folds ASCII only, which is
    all an ASCII needle can match); other cases decode the text first.
    """
    if needle.isascii():
        wanted = needle.encode("ascii")
        slow: list[dict[str, Any]] = []
        for node in _text_parts(tree, 0):
            charset = (node.get("cs") or "us-ascii").lower()
            if not _ASCII_COMPATIBLE.fullmatch(charset):
                slow.append(node)
                continue
            try:
                data = decode_transfer(raw[node["b"] : node["e"]], node.get("c", ""))
            except CommandNo:
                continue
            if wanted in data.lower():
                return True
        return any(needle in _part_text(raw, n).lower() for n in slow)
    return needle in message_text(raw, tree).lower()


def _text_parts(node: dict[str, Any], depth: int) -> list[dict[str, Any]]:
    if depth > 20:
        return []
    if "p" in node:
        return [leaf for child in node["p"] for leaf in _text_parts(child, depth + 1)]
    if "m" in node:
        return _text_parts(node["m"], depth + 1)
    return [node] if node.get("t") == "text" else []


def _part_text(raw: bytes, node: dict[str, Any]) -> str:
    try:
        data = decode_transfer(raw[node["b"] : node["e"]], node.get("c", ""))
    except CommandNo:
        return ""
    charset = node.get("cs") or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    if node.get("s") == "html":
        text = html.unescape(_TAG.sub(" ", text))
    return text


def message_text(raw: bytes, node: dict[str, Any]) -> str:
    """The decoded text of the text parts (HTML tags dropped), for BODY/TEXT."""
    out: list[str] = []
    _collect(raw, node, out, 0)
    return "\n".join(out)


def _collect(raw: bytes, node: dict[str, Any], out: list[str], depth: int) -> None:
    if depth > 20:
        return
    if "p" in node:
        for child in node["p"]:
            _collect(raw, child, out, depth + 1)
        return
    if "m" in node:
        inner = node["m"]
        out.append(bytes_to_text(raw[inner["h"] : inner["b"]]))
        _collect(raw, inner, out, depth + 1)
        return
    if node.get("t") == "text":
        out.append(_part_text(raw, node))


def _header_values(meta: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in meta.get("fields", ()) if n == name]


def evaluate(key: SearchKey, item: Loaded, ctx: SearchContext) -> bool | None:
    """``True``/``False``, or ``None`` when the key needs data ``item`` does not carry."""
    row = item.row
    if isinstance(key, All):
        return True
    if isinstance(key, FlagKey):
        if key.flag == "\\Recent":
            return row.uid in ctx.recent
        return key.flag in row.flags.split()
    if isinstance(key, SizeKey):
        return row.size > key.size if key.larger else row.size < key.size
    if isinstance(key, SetKey):
        return ctx.in_set(key, row.uid)
    if isinstance(key, ModSeqKey):
        return row.modseq >= key.modseq
    if isinstance(key, DateKey):
        if key.sent:
            if item.meta is None:
                return None
            sent = item.meta.get("sent")
            if sent is None:
                return False
            day = str(sent)
        else:
            day = row.internal_date.date().isoformat()
        wanted = key.day.isoformat()
        if key.op == "before":
            return day < wanted
        if key.op == "on":
            return day == wanted
        return day >= wanted
    if isinstance(key, HeaderKey):
        if item.meta is None:
            return None
        values = _header_values(item.meta, key.field)
        if not key.value:
            return bool(values)
        return any(_contains(v, ctx.folded(key.value)) for v in values)
    if isinstance(key, TextKey):
        if item.meta is None or item.body is None:
            return None
        needle = ctx.folded(key.value)
        if not key.body_only:
            headers = "\n".join(v for _, v in item.meta["fields"])
            if needle in headers.lower():
                return True
        return text_contains(item.body, item.meta["tree"], needle)
    if isinstance(key, Not):
        inner = evaluate(key.key, item, ctx)
        return None if inner is None else not inner
    if isinstance(key, Or):
        left = evaluate(key.left, item, ctx)
        if left is True:
            return True
        right = evaluate(key.right, item, ctx)
        if right is True:
            return True
        return None if left is None or right is None else False
    assert isinstance(key, And)
    result: bool | None = True
    for k in key.keys:
        v = evaluate(k, item, ctx)
        if v is False:
            return False
        if v is None:
            result = None
    return result


def _has_cheap_part(key: SearchKey) -> bool:
    """Whether some part of ``key`` is decided by the message row alone."""
    if isinstance(key, Not):
        return _has_cheap_part(key.key)
    if isinstance(key, Or):
        return _has_cheap_part(key.left) or _has_cheap_part(key.right)
    if isinstance(key, And):
        return any(_has_cheap_part(k) for k in key.keys)
    return needs(key) == (False, False)


@dataclass(frozen=True, slots=True)
class SearchResult:
    uids: list[int]
    highest_modseq: int


def run_search(
    conn: Connection,
    keystore: KeyStore,
    account_id: int,
    mailbox_id: int,
    key: SearchKey,
    ctx: SearchContext,
) -> SearchResult:
    """The UIDs (among ``ctx.uids``) that match ``key``, ascending."""
    uids = list(ctx.uids)
    matched: list[Loaded] = []
    want_meta, want_body = needs(key)
    if (want_meta or want_body) and not _has_cheap_part(key):
        undecided_uids = uids  # the first pass could not decide anything
    else:
        undecided_uids = []
        for row in message_rows(conn, mailbox_id, uids):
            item = Loaded(row)
            verdict = evaluate(key, item, ctx)
            if verdict is True:
                matched.append(item)
            elif verdict is None:
                undecided_uids.append(row.uid)
    if undecided_uids:
        for i in range(0, len(undecided_uids), BATCH):
            chunk = undecided_uids[i : i + BATCH]
            for item in load_messages(
                conn, keystore, account_id, mailbox_id, chunk, meta=want_meta, body=want_body
            ):
                if evaluate(key, item, ctx):
                    matched.append(item)
    matched.sort(key=lambda it: it.row.uid)
    known = set(uids)
    out = [it.row.uid for it in matched if it.row.uid in known]
    return SearchResult(out, max((it.row.modseq for it in matched), default=0))


def seq_numbers(all_uids: Sequence[int], uids: Sequence[int]) -> list[int]:
    """Sequence numbers of ``uids`` (all present in ascending ``all_uids``)."""
    return [bisect_left(all_uids, u) + 1 for u in uids]
