"""What is computed once at delivery from a message's bytes and stored (encrypted) beside it.

ARCHITECTURE.md §10 "work once at delivery": the IMAP server answers ENVELOPE,
BODYSTRUCTURE and most SEARCH keys from this index instead of re-parsing the message.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

INDEX_VERSION = 1

#: Header fields kept in the index (decoded text, for SEARCH and ENVELOPE).
INDEXED_FIELDS = ("subject", "from", "sender", "reply-to", "to", "cc", "bcc", "date",
                  "message-id", "in-reply-to")


def build_index(raw: bytes) -> dict[str, Any]:
    """The index of one message (JSON-serialisable)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    fields: dict[str, str] = {}
    for name in INDEXED_FIELDS:
        value = headers.get(name)
        if value is not None:
            fields[name] = str(value)
    return {"v": INDEX_VERSION, "size": len(raw), "headers": fields}
