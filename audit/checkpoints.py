"""Signed checkpoints: ``(seq, hash)`` statements signed with the journal key.

A checkpoint commits to every entry up to ``seq`` (the hash chains them all). They are
stored in ``audit_checkpoint`` and mirrored, one JSON object a line, to an append-only
file outside the database, so that deleting the tail of the journal *and* its checkpoints
from the database is still detected by ``verify``. The signed message is::

    caducee-audit-checkpoint/1\\n<seq>\\n<hash hex>\\n<at>\\n<kind>\\n
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Connection, insert, select

from audit.keys import key_id
from audit.tables import audit_checkpoint

PERIODIC = "periodic"
MANUAL = "manual"
PRUNE = "prune"
KINDS = frozenset({PERIODIC, MANUAL, PRUNE})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: bytes
    at: str
    kind: str
    key_id: str
    signature: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq, "hash": self.hash.hex(), "at": self.at, "kind": self.kind,
                "key": self.key_id, "sig": base64.b64encode(self.signature).decode("ascii"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Checkpoint:
        d = json.loads(line)
        return cls(
            seq=int(d["seq"]), hash=bytes.fromhex(d["hash"]), at=str(d["at"]),
            kind=str(d["kind"]), key_id=str(d["key"]), signature=base64.b64decode(d["sig"]),
        )


def signed_message(seq: int, hash_: bytes, at: str, kind: str) -> bytes:
    return f"caducee-audit-checkpoint/1\n{seq}\n{hash_.hex()}\n{at}\n{kind}\n".encode("ascii")


def sign(key: Ed25519PrivateKey, seq: int, hash_: bytes, at: str, kind: str) -> Checkpoint:
    sig = key.sign(signed_message(seq, hash_, at, kind))
    return Checkpoint(seq, hash_, at, kind, key_id(key.public_key()), sig)


def signature_ok(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    pub = keys.get(cp.key_id)
    if pub is None or cp.kind not in KINDS:
        return False
    try:
        pub.verify(cp.signature, signed_message(cp.seq, cp.hash, cp.at, cp.kind))
    except InvalidSignature:
        return False
    return True


# -- database -----------------------------------------------------------------------------


def store(conn: Connection, cp: Checkpoint) -> None:
    conn.execute(
        insert(audit_checkpoint).values(
            seq=cp.seq, hash=cp.hash, at=cp.at, kind=cp.kind, key_id=cp.key_id,
            signature=cp.signature,
        )
    )


def load_all(conn: Connection) -> list[Checkpoint]:
    t = audit_checkpoint.c
    rows = conn.execute(
        select(t.seq, t.hash, t.at, t.kind, t.key_id, t.signature).order_by(t.id)
    ).all()
    return [Checkpoint(r[0], bytes(r[1]), r[2], r[3], r[4], bytes(r[5])) for r in rows]


# -- the append-only file -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileLine:
    lineno: int
    checkpoint: Checkpoint | None  # None: the line does not parse
    text: str


def read_file(path: Path) -> Iterator[FileLine]:
    """The file's lines; a missing file has none. A torn last line is reported, not fatal."""
    try:
        f = path.open("r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for lineno, line in enumerate(f, 1):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            try:
                yield FileLine(lineno, Checkpoint.from_json(text), text)
            except (ValueError, KeyError, TypeError):
                yield FileLine(lineno, None, text)


def create_file(path: Path) -> None:
    """Create the (empty) checkpoint file if it does not exist, at installation: from then
    on, its absence is evidence that ``verify`` reports."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_file(path: Path, checkpoints: list[Checkpoint]) -> None:
    """Append lines with ``O_APPEND`` (one write per line, atomic for small writes), fsync."""
    if not checkpoints:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for cp in checkpoints:
            os.write(fd, (cp.to_json() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
