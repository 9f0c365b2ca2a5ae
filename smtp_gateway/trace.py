"""Trace and identification fields added to accepted messages.

``Received`` follows RFC 5321 §4.4 with the ``with`` protocol types of RFC 3848 (ESMTPS,
ESMTPSA); ``Message-ID`` (RFC 5322 §3.6.4) is added when the client did not set one, as a
submission server may (RFC 6409 §8.3).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime

_QUEUE_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-\[\]:_]")


_QUEUE_PREFIX = secrets.randbelow(len(_QUEUE_ALPHABET) ** 6)
_queue_counter = itertools.count(secrets.randbelow(1 << 20))


def _base30(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, len(_QUEUE_ALPHABET))
        out.append(_QUEUE_ALPHABET[r])
    return "".join(out)


def new_queue_id() -> str:
    """A short identifier of one accepted message (logs, replies, journal): unique, not
    secret — a per-process random prefix, the time, a counter; no system call per id."""
    n = (time.time_ns() // 1_000_000) * 4096 + next(_queue_counter) % 4096
    return _base30(_QUEUE_PREFIX, 6) + _base30(n, 10)


def received_header(
    *,
    helo: str,
    client_ip: str | None,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls_version: str | None,
    cipher: str | None,
    recipient: str | None,
    now: datetime | None = None,
) -> bytes:
    """One ``Received:`` field with CRLF (folded), safe against injection through HELO."""
    helo_s = _UNSAFE.sub("?", helo)[:255] or "unknown"
    ip = _UNSAFE.sub("?", client_ip or "unknown")
    when = format_datetime(now or datetime.now(UTC))
    tls = f"\r\n\t(using {tls_version} with cipher {cipher})" if tls_version and cipher else ""
    rcpt = f"\r\n\tfor <{recipient}>" if recipient and _is_safe_address(recipient) else ""
    return (
        f"Received: from {helo_s} ([{ip}])\r\n\tby {hostname} (Caducée) with {protocol}"
        f" id {queue_id}{tls}{rcpt};\r\n\t{when}\r\n"
    ).encode()


def _is_safe_address(address: str) -> bool:
    return not any(c in address for c in "\r\n<>") and len(address) < 320


def message_id_header(hostname: str) -> tuple[bytes, str]:
    """A new ``Message-ID:`` field and the id itself (with angle brackets)."""
    mid = f"<{secrets.token_hex(12)}@{hostname}>"
    return f"Message-ID: {mid}\r\n".encode(), mid


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


_MID = re.compile(rb"^message-id:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I | re.M)


def find_message_id(raw: bytes) -> str | None:
    """The Message-ID of a message, or None (only the header block is searched)."""
    m = _MID.search(header_block(raw))
    if not m:
        return None
    value = re.sub(rb"\s+", b"", m.group(1)).decode("utf-8", "replace")
    return value[:250] or None


def header_values(raw: bytes, name: str) -> list[str]:
    """The unfolded values of every ``name:`` field of the header block."""
    pattern = re.compile(
        rb"^" + re.escape(name.encode()) + rb":[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)",
        re.I | re.M,
    )
    return [
        re.sub(rb"\r\n(?=[ \t])", b"", m.group(1)).decode("utf-8", "replace").strip()
        for m in pattern.finditer(header_block(raw))
    ]
