r"""The canonical encoding of an entry and the hash chain.

An entry's canonical encoding is the UTF-8 of the compact JSON array (``,`` and ``:``
separators, no spaces; non-ASCII characters written as themselves; ``"``, ``\`` and
control characters escaped as JSON requires, ``\u00XX`` in lower-case hex) of its
fields in this order::

    [seq, at, action, actor, outcome, reason, message_id, document_id, queue_id,
     patient_ins, client_ip, protocol, object_ids]

where absent fields are ``null``, ``at`` is the stored text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)
and ``object_ids`` is the *string* holding the compact JSON list of ``[kind, id]`` pairs.
The entry's hash is ``SHA-256(previous hash || canonical encoding)``; the entry before the
first has the hash ``GENESIS`` (32 zero bytes). Anyone can recompute it from an export.

This is exactly what Python's ``json`` (``ensure_ascii=False``), SQLite's ``json_array``
and PostgreSQL's ``array_to_json`` (of a ``text[]``) produce, so ``verify`` can let the
database build the text of each entry (fewer, cheaper values to fetch); Python re-checks
any entry that fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)

#: The order of the fields in the canonical encoding (and of the columns verify reads).
FIELDS: tuple[str, ...] = (
    "seq", "at", "action", "actor", "outcome", "reason", "message_id", "document_id",
    "queue_id", "patient_ins", "client_ip", "protocol", "object_ids",
)

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_sha256 = hashlib.sha256


def canonical_text(values: Sequence[Any]) -> str:
    """The canonical JSON text of one entry's values, in :data:`FIELDS` order."""
    return _encode(values)


def canonical(values: Sequence[Any]) -> bytes:
    return _encode(values).encode("utf-8")


def chain(prev: bytes, values: Sequence[Any]) -> bytes:
    """The hash of an entry whose predecessor has hash ``prev``."""
    return _sha256(prev + _encode(values).encode("utf-8")).digest()


def chain_text(prev: bytes, text: str) -> bytes:
    return _sha256(prev + text.encode("utf-8")).digest()


def with_seq(text: str, seq: int) -> str:
    """The canonical text ``text`` as it would be with sequence number ``seq``."""
    return f"[{seq}{text[text.index(','):]}"


def clean(value: str | None) -> str | None:
    """Make a string storable and encodable: lone surrogates (from undecodable bytes)
    become "?". ASCII strings — nearly all — are returned untouched at once."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def encode_object_ids(pairs: Sequence[tuple[str, str]]) -> str:
    return _encode([[str(k), str(v)] for k, v in pairs])


def decode_object_ids(text: str) -> tuple[tuple[str, str], ...]:
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    return tuple((str(p[0]), str(p[1])) for p in data if isinstance(p, list) and len(p) == 2)


def format_at(when: datetime) -> str:
    """Fixed-width ISO 8601 UTC with microseconds; a naive time is taken as UTC."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
        f"{when.second:02d}.{when.microsecond:06d}Z"
    )


def parse_at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
