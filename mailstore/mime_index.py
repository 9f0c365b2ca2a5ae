"""What is computed once at delivery from a message's bytes and stored (encrypted) beside it.

ARCHITECTURE.md §10 "work once at delivery": the IMAP server answers ENVELOPE, BODY,
BODYSTRUCTURE, BODY[section] and the header SEARCH keys from this index instead of
re-parsing the message. The index is JSON (it is sealed in ``blob.meta``):

``v``
    :data:`INDEX_VERSION`.
``size``
    RFC822.SIZE.
``headers``
    a few header fields, raw text (the webmail's message list).
``envelope`` / ``body`` / ``bodystructure``
    the IMAP renderings (RFC 3501 §7.4.2, RFC 9051 §7.5.2), as bytes stored in a Latin-1
    string, ready to splice into a FETCH response. 8-bit strings are rendered as
    literals, valid with and without UTF-8 mode.
``tree``
    the MIME structure with byte offsets, for BODY[section] and BINARY (see :class:`Node`).
``fields``
    every top-level header field, decoded (RFC 2047), as ``[lower-case name, text]``;
    bounded. SEARCH FROM/TO/CC/BCC/SUBJECT/HEADER match against these.
``sent``
    the Date header's calendar date (``YYYY-MM-DD``) for SENTBEFORE/SENTON/SENTSINCE.

The MIME parser (RFC 2045 §5-6, RFC 2046 §5.1.1 and §5.2.1) works on bytes and is lenient:
a missing close delimiter ends the part at the end of its parent, a multipart without any
delimiter is one empty text part, depth and part counts are bounded.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any

from mailstore.imap.formatter import Atom, Value, render
from mailstore.mime_headers import (
    decode_text,
    first_in,
    first_values,
    parse_addresses,
    parse_params,
    split_fields,
)

INDEX_VERSION = 2

#: Header fields kept raw in ``headers`` (the webmail's list view).
INDEXED_FIELDS = ("subject", "from", "sender", "reply-to", "to", "cc", "bcc", "date",
                  "message-id", "in-reply-to")

MAX_DEPTH = 40
MAX_PARTS = 5000
MAX_FIELDS = 300
MAX_FIELD_TEXT = 64 * 1024

_BLANK_LINE = re.compile(rb"\n\r?\n")

#: A node of ``tree``: offsets ``h`` (header start), ``b`` (body start), ``e`` (body end);
#: ``t``/``s`` type and subtype (lower case); ``c`` transfer encoding (lower case); ``cs``
#: charset; ``p`` children of a multipart; ``m`` the message inside a message/rfc822.
Node = dict[str, Any]


def body_offset(raw: bytes, start: int = 0, end: int | None = None) -> int:
    """Where an entity's body starts: after the first empty line (RFC 5322 §2.1), or at
    ``end`` when there is none. CRLF and bare LF line ends are both understood."""
    end = len(raw) if end is None else end
    if raw.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if raw.startswith(b"\n", start) and start + 1 <= end:
        return start + 1
    m = _BLANK_LINE.search(raw, start, end)
    return m.end() if m else end


def build_index(raw: bytes) -> dict[str, Any]:
    """The index of one message (JSON-serialisable)."""
    builder = _Builder(raw)
    root, fields = builder.entity(0, len(raw), b"text/plain", 0)
    decoded: list[list[str]] = []
    budget = MAX_FIELD_TEXT
    for name, value in fields[:MAX_FIELDS]:
        text = decode_text(value)[:budget]
        budget -= len(text)
        decoded.append([name.decode("latin-1").lower(), text])
    firsts = builder.firsts(root)
    headers: dict[str, str] = {}
    for field_name in INDEXED_FIELDS:
        val = first_in(firsts, field_name.encode())
        if val is not None:
            headers[field_name] = val.decode("utf-8", "replace")
    return {
        "v": INDEX_VERSION,
        "size": len(raw),
        "headers": headers,
        "envelope": builder.envelope(firsts).decode("latin-1"),
        "body": builder.structure(root, extended=False).decode("latin-1"),
        "bodystructure": builder.structure(root, extended=True).decode("latin-1"),
        "tree": root,
        "fields": decoded,
        "sent": _sent_date(first_in(firsts, b"date")),
    }


def _sent_date(value: bytes | None) -> str | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return when.date().isoformat()


class _Builder:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.parts = 0
        #: The first value of each field name of each entity, by id(node), for rendering
        #: (see :func:`first_values`).
        self._firsts: dict[int, dict[bytes, bytes]] = {}

    # -- parsing -------------------------------------------------------------------------

    def entity(
        self, start: int, end: int, default_type: bytes, depth: int
    ) -> tuple[Node, list[tuple[bytes, bytes]]]:
        raw = self.raw
        self.parts += 1
        body_start = body_offset(raw, start, end)
        fields = split_fields(raw[start:body_start]) if body_start > start else []
        firsts = first_values(fields)
        ctype_raw = first_in(firsts, b"content-type")
        mime, params = parse_params(ctype_raw) if ctype_raw else (b"", [])
        if b"/" in mime:
            t, _, s = mime.partition(b"/")
        else:
            t, _, s = default_type.partition(b"/")
            params = [] if ctype_raw is None or not mime else params
        if not params and t.lower() == b"text":
            params = [(b"charset", b"us-ascii")]  # RFC 2045 §5.2 default
        node: Node = {
            "h": start, "b": body_start, "e": end,
            "t": t.decode("latin-1").lower(), "s": s.decode("latin-1").lower(),
        }
        cte = first_in(firsts, b"content-transfer-encoding")
        if cte:
            node["c"] = cte.decode("latin-1").strip().lower()
        charset = next((v for k, v in params if k.lower() == b"charset"), None)
        if charset:
            node["cs"] = charset.decode("latin-1")
        self._firsts[id(node)] = firsts
        node_params = params
        if node["t"] == "multipart" and depth < MAX_DEPTH:
            boundary = next((v for k, v in params if k.lower() == b"boundary"), None)
            child_type = b"message/rfc822" if node["s"] == "digest" else b"text/plain"
            node["p"] = [
                self.entity(a, b, child_type, depth + 1)[0]
                for a, b in self._split(body_start, end, boundary)
            ]
        elif (node["t"], node["s"]) in (("message", "rfc822"), ("message", "global")) and (
            depth < MAX_DEPTH and self.parts < MAX_PARTS
        ):
            node["m"] = self.entity(body_start, end, b"text/plain", depth + 1)[0]
        node["_params"] = node_params  # removed by structure rendering (not JSON)
        return node, fields

    def _split(self, start: int, end: int, boundary: bytes | None) -> list[tuple[int, int]]:
        """Part ranges of a multipart body (RFC 2046 §5.1.1)."""
        if not boundary:
            return [(start, start)]
        raw = self.raw
        delim = b"--" + boundary
        #: (delimiter start with its leading CRLF, content start, is the close delimiter)
        found: list[tuple[int, int, bool]] = []
        pos = start
        while pos < end and len(found) < MAX_PARTS - self.parts:
            i = raw.find(delim, pos, end)
            if i < 0:
                break
            pos = i + len(delim)
            if i != start and raw[i - 1] != 0x0A:
                continue
            j = i + len(delim)
            close = raw.startswith(b"--", j)
            if close:
                j += 2
            while j < end and raw[j] in (0x20, 0x09):
                j += 1
            if j < end and raw[j] == 0x0D:
                j += 1
            if j < end and raw[j] != 0x0A:
                continue  # a longer boundary that only starts like ours
            content = min(j + 1, end)
            dstart = i
            if i != start:
                dstart = i - 1
                if dstart > start and raw[dstart - 1] == 0x0D:
                    dstart -= 1
            found.append((dstart, content, close))
            if close:
                break
            pos = content
        parts: list[tuple[int, int]] = []
        for k, (_, content, close) in enumerate(found):
            if close:
                break
            part_end = found[k + 1][0] if k + 1 < len(found) else end
            parts.append((content, max(content, part_end)))
        return parts or [(start, start)]

    # -- rendering ---------------------------------------------------------------------------

    def firsts(self, node: Node) -> dict[bytes, bytes]:
        """The first value of each header field of ``node``'s entity."""
        return self._firsts.get(id(node), {})

    def envelope(self, firsts: dict[bytes, bytes]) -> bytes:
        """ENVELOPE (RFC 3501 §7.4.2) of the entity whose fields ``firsts`` indexes."""

        def addrs(name: bytes) -> Value:
            val = first_in(firsts, name)
            if not val:
                return None
            found = parse_addresses(val)
            if not found:
                return None
            # RFC 3501 §9 env-to = "(" 1*address ")": no space between the addresses.
            return Atom(b"(" + b"".join(render(list(a)) for a in found) + b")")

        from_ = addrs(b"from")
        sender = addrs(b"sender") or from_
        reply_to = addrs(b"reply-to") or from_
        env: list[Value] = [
            first_in(firsts, b"date"),
            first_in(firsts, b"subject"),
            from_,
            sender,
            reply_to,
            addrs(b"to"),
            addrs(b"cc"),
            addrs(b"bcc"),
            first_in(firsts, b"in-reply-to"),
            first_in(firsts, b"message-id"),
        ]
        return render(env)

    def structure(self, node: Node, *, extended: bool) -> bytes:
        """BODY (``extended=False``) or BODYSTRUCTURE of ``node``; the extended rendering
        comes last and strips the parser's private keys from the tree."""
        out = self._structure(node, extended)
        if extended:
            _drop_private(node)
        return out

    def _structure(self, node: Node, extended: bool) -> bytes:
        firsts = self.firsts(node)
        params: list[tuple[bytes, bytes]] = node.get("_params", [])
        param_list: Value = [v for kv in params for v in kv] or None
        ext: list[Value] = []
        if extended:
            disp_raw = first_in(firsts, b"content-disposition")
            disposition: Value = None
            if disp_raw:
                dtype, dparams = parse_params(disp_raw)
                disposition = [dtype, [v for kv in dparams for v in kv] or None]
            lang_raw = first_in(firsts, b"content-language")
            language: Value = None
            if lang_raw:
                langs: list[Value] = [x.strip() for x in lang_raw.split(b",") if x.strip()]
                language = langs
            ext = [disposition, language, first_in(firsts, b"content-location")]
        if "p" in node:
            # RFC 3501 §9 body-type-mpart: the parts follow each other without spaces.
            out = b"(" + b"".join(self._structure(c, extended) for c in node["p"])
            out += b" " + render(node["s"].encode("latin-1"))
            if extended:
                out += b" " + render([param_list, *ext])[1:-1]
            return out + b")"
        enc = first_in(firsts, b"content-transfer-encoding")
        single: list[Value] = [
            node["t"].encode("latin-1"),
            node["s"].encode("latin-1"),
            param_list,
            first_in(firsts, b"content-id"),
            first_in(firsts, b"content-description"),
            enc if enc else b"7bit",
            node["e"] - node["b"],
        ]
        if "m" in node:
            inner = node["m"]
            single.append(Atom(self.envelope(self.firsts(inner))))
            single.append(Atom(self._structure(inner, extended)))
            single.append(self.raw.count(b"\n", node["b"], node["e"]))
        elif node["t"] == "text":
            single.append(self.raw.count(b"\n", node["b"], node["e"]))
        if extended:
            single += [first_in(firsts, b"content-md5"), *ext]
        return render(single)


def _drop_private(node: Node) -> None:
    node.pop("_params", None)
    for child in node.get("p", ()):
        _drop_private(child)
    if "m" in node:
        _drop_private(node["m"])
