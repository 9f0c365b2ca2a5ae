"""Storing and reading message content: the primitive every delivery path goes through.

A message's bytes and its index (:mod:`mailstore.mime_index`) are encrypted with the
owning account's data key into one ``blob`` row; a ``message`` row places the blob in a
mailbox with a UID and a MODSEQ (RFC 3501 §2.3.1.1, RFC 7162 §3.1). Copies inside one
account share the blob.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, insert, select, update

from mailstore.crypto import aad_for, open_sealed, seal
from mailstore.db import Tx
from mailstore.keystore import KeyStore
from mailstore.mime_index import build_index
from mailstore.tables import blob, mailbox, message


class MailboxNotFound(Exception):
    """The target mailbox does not exist (IMAP answers ``NO [TRYCREATE]``)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a message landed."""

    account_id: int
    mailbox_id: int
    uid: int
    modseq: int
    blob_id: str


def body_aad(blob_id: str, account_id: int) -> bytes:
    return aad_for("blob-body", blob_id, account_id)


def meta_aad(blob_id: str, account_id: int) -> bytes:
    return aad_for("blob-meta", blob_id, account_id)


def normalise_flags(flags: Iterable[str]) -> str:
    """Flags as stored: unique, sorted, space-separated (system flags keep their case)."""
    return " ".join(sorted(set(flags)))


def encode_index(raw: bytes) -> bytes:
    return orjson.dumps(build_index(raw))


def store_blob(
    conn: Connection, keystore: KeyStore, account_id: int, raw: bytes, index_json: bytes
) -> str:
    """Encrypt ``raw`` and its index with the account's data key; return the blob id."""
    cipher = keystore.cipher(conn, account_id)
    blob_id = secrets.token_hex(16)
    conn.execute(
        _INSERT_BLOB,
        {
            "id": blob_id,
            "account_id": account_id,
            "size": len(raw),
            "body": seal(cipher, body_aad(blob_id, account_id), raw),
            "meta": seal(cipher, meta_aad(blob_id, account_id), index_json),
            "created_at": datetime.now(UTC),
        },
    )
    return blob_id


# Statements built once: on the hot path SQLAlchemy then only looks up their compiled form
# instead of constructing and cache-keying a new statement per message.
_INSERT_BLOB = insert(blob)
_INSERT_MESSAGE = insert(message)
_NEXT_UID = (
    update(mailbox)
    .where(mailbox.c.id == bindparam("mailbox_id"))
    .values(uidnext=mailbox.c.uidnext + 1, highestmodseq=mailbox.c.highestmodseq + 1)
    .returning(mailbox.c.uidnext, mailbox.c.highestmodseq)
)


def place_blob(
    conn: Connection,
    mailbox_id: int,
    blob_id: str,
    size: int,
    *,
    flags: Iterable[str] = (),
    internal_date: datetime | None = None,
    recent: bool = True,
) -> tuple[int, int]:
    """Give a blob a UID and MODSEQ in a mailbox; return ``(uid, modseq)``."""
    row = conn.execute(_NEXT_UID, {"mailbox_id": mailbox_id}).first()
    if row is None:
        raise MailboxNotFound(f"mailbox {mailbox_id} does not exist")
    uid, modseq = int(row[0]) - 1, int(row[1])
    conn.execute(
        _INSERT_MESSAGE,
        {
            "mailbox_id": mailbox_id,
            "uid": uid,
            "modseq": modseq,
            "flags": normalise_flags(flags),
            "internal_date": internal_date or datetime.now(UTC),
            "size": size,
            "blob_id": blob_id,
            "recent": recent,
        },
    )
    return uid, modseq


def append_message(
    tx: Tx,
    keystore: KeyStore,
    account_id: int,
    mailbox_id: int,
    raw: bytes,
    *,
    flags: Iterable[str] = (),
    internal_date: datetime | None = None,
    index_json: bytes | None = None,
    notify: Callable[[int], None] | None = None,
) -> Stored:
    """Store one message in one mailbox inside the caller's write job.

    ``index_json`` lets a caller delivering one message to many recipients parse it once.
    ``notify(mailbox_id)`` runs after the commit (IMAP IDLE wake-up).
    """
    if index_json is None:
        index_json = encode_index(raw)
    blob_id = store_blob(tx.conn, keystore, account_id, raw, index_json)
    uid, modseq = place_blob(
        tx.conn, mailbox_id, blob_id, len(raw), flags=flags, internal_date=internal_date
    )
    if notify is not None:
        tx.after_commit(lambda: notify(mailbox_id))
    return Stored(account_id, mailbox_id, uid, modseq, blob_id)


def read_body(conn: Connection, keystore: KeyStore, account_id: int, blob_id: str) -> bytes:
    """The decrypted bytes of a blob; :class:`~mailstore.crypto.DecryptionError` if tampered."""
    data = conn.execute(select(blob.c.body).where(blob.c.id == blob_id)).scalar_one()
    cipher = keystore.cipher(conn, account_id)
    return open_sealed(cipher, body_aad(blob_id, account_id), data, what=f"message blob {blob_id}")


def read_meta(
    conn: Connection, keystore: KeyStore, account_id: int, blob_id: str
) -> dict[str, Any]:
    data = conn.execute(select(blob.c.meta).where(blob.c.id == blob_id)).scalar_one()
    cipher = keystore.cipher(conn, account_id)
    plain = open_sealed(
        cipher, meta_aad(blob_id, account_id), data, what=f"message index {blob_id}"
    )
    result: dict[str, Any] = orjson.loads(plain)
    return result
