"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII stands for itself except ``&``, written ``&-``; other characters are
UTF-16 encoded, then base64 with ``,`` instead of ``/`` and no padding, between ``&`` and ``-``.
Clients that ENABLE IMAP4rev2 (RFC 9051 §5.1) or UTF8=ACCEPT use UTF-8 instead.
"""

from __future__ import annotations

import base64
import binascii


class MUtf7Error(ValueError):
    """Not valid modified UTF-7."""


def _flush(chunk: list[str], out: list[str]) -> None:
    if chunk:
        data = "".join(chunk).encode("utf-16-be")
        out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
        chunk.clear()


def encode(name: str) -> bytes:
    """Encode a mailbox name (``str``) to modified UTF-7 bytes."""
    out: list[str] = []
    chunk: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            _flush(chunk, out)
            out.append("&-" if ch == "&" else ch)
        else:
            chunk.append(ch)
    _flush(chunk, out)
    return "".join(out).encode("ascii")


def decode(data: bytes) -> str:
    """Decode modified UTF-7 bytes; raise :class:`MUtf7Error` when malformed."""
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x26:  # '&'
            end = data.find(b"-", i + 1)
            if end < 0:
                raise MUtf7Error("unterminated &-sequence")
            if end == i + 1:
                out.append("&")
            else:
                enc = data[i + 1 : end].replace(b",", b"/")
                if len(enc) % 4 == 1:
                    raise MUtf7Error("bad base64 length")
                enc += b"=" * (-len(enc) % 4)
                try:
                    raw = base64.b64decode(enc, validate=True)
                    text = raw.decode("utf-16-be")
                except (binascii.Error, UnicodeDecodeError):
                    raise MUtf7Error("bad base64 in &-sequence") from None
                if any(0x20 <= ord(c) <= 0x7E for c in text):
                    raise MUtf7Error("printable ASCII must not be base64-encoded")
                out.append(text)
            i = end + 1
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
            i += 1
        else:
            raise MUtf7Error("8-bit byte in a modified UTF-7 name")
    return "".join(out)
