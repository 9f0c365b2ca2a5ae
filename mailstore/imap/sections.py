"""BODY[section] and BINARY[section] extraction from a message and its MIME tree.

RFC 3501 §6.4.5 (RFC 9051 §6.4.5): part numbers descend into multiparts; the body of a
non-multipart message (or of a message/rfc822 part's message) is its part 1; ``n.MIME``
is a part's own header; ``HEADER``/``TEXT``/``HEADER.FIELDS`` apply to the top-level message
or to the message inside a message/rfc822 part. BINARY (RFC 3516 §4.2) returns the content
with its transfer encoding removed. All offsets come from :mod:`mailstore.mime_index`, so
nothing is re-parsed here but the header lines HEADER.FIELDS needs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from mailstore.imap.errors import CommandNo
from mailstore.imap.fetch_items import Section

Node = dict[str, Any]


def resolve(tree: Node, part: tuple[int, ...]) -> Node | None:
    """The node a part number names, or ``None`` if there is no such part."""
    node = tree
    is_message = True  # the top level, or the message inside a message/rfc822 part
    in_body = False  # node is the body of a single-part message: it has no parts
    for k in part:
        if in_body:
            return None
        if "m" in node and not is_message:
            node = node["m"]
            is_message = True
        if "p" in node:
            children = node["p"]
            if k > len(children):
                return None
            node = children[k - 1]
            is_message = False
        elif k == 1:
            # The body of a single-part message is its part 1 (RFC 3501 §6.4.5); like
            # Dovecot, a non-multipart part of a multipart is its own part 1 too.
            in_body = is_message
            is_message = False
        else:
            return None
    return node


def _header_lines(header: bytes) -> list[tuple[bytes, bytes]]:
    """``(lower-case name, full field bytes incl. continuation lines and line ends)``."""
    out: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and out:
            name, data = out[-1]
            out[-1] = (name, data + line)
            continue
        colon = line.find(b":")
        name = line[:colon].strip().lower() if colon > 0 else b""
        out.append((name, line))
    return out


def header_fields(header: bytes, names: tuple[bytes, ...], *, negate: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: matching fields in order, then a blank line."""
    wanted = {n.lower() for n in names}
    kept = [data for name, data in _header_lines(header) if (name in wanted) != negate]
    out = b"".join(kept)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    # Then the blank line that ends a header, in the message's own line-end style.
    bare_lf = header.endswith(b"\n\n") or header == b"\n"
    has_blank = bare_lf or header.endswith(b"\n\r\n") or header == b"\r\n"
    if out or has_blank:
        out += b"\n" if bare_lf else b"\r\n"
    return out


def body_section(raw: bytes, tree: Node, section: Section) -> bytes:
    """The bytes of ``BODY[section]`` (empty when the part does not exist)."""
    node = resolve(tree, section.part) if section.part else tree
    if node is None:
        return b""
    text = section.text
    if text is None:
        if not section.part:
            return raw
        return raw[node["b"] : node["e"]]
    if text == "MIME":
        return raw[node["h"] : node["b"]]
    if section.part:
        if "m" not in node:
            return b""
        node = node["m"]
    header = raw[node["h"] : node["b"]]
    if text == "HEADER":
        return header
    if text == "TEXT":
        return raw[node["b"] : node["e"]]
    return header_fields(header, section.fields, negate=text == "HEADER.FIELDS.NOT")


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Remove a Content-Transfer-Encoding (RFC 2045 §6); ``NO [UNKNOWN-CTE]`` otherwise."""
    if encoding in ("", "7bit", "8bit", "binary"):
        return data
    if encoding == "base64":
        try:
            return base64.b64decode(b"".join(data.split()) + b"==", validate=False)
        except binascii.Error:
            raise CommandNo("invalid base64 content", b"UNKNOWN-CTE") from None
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    raise CommandNo(f"unknown transfer encoding {encoding}", b"UNKNOWN-CTE")


def binary_section(raw: bytes, tree: Node, part: tuple[int, ...]) -> bytes | None:
    """``BINARY[part]`` content, decoded; ``None`` when the part does not exist."""
    if not part:
        return raw
    node = resolve(tree, part)
    if node is None:
        return None
    data = raw[node["b"] : node["e"]]
    if "p" in node or "m" in node:
        return data
    return decode_transfer(data, node.get("c", ""))
