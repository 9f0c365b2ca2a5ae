"""Exports: a period (optionally one patient's entries) as JSON Lines.

The file holds a ``header`` line, one ``entry`` line per entry (with its ``prev`` and
``hash``, so each entry can be re-hashed on its own: ``hash = SHA-256(prev || canonical)``,
see :mod:`audit.canonical`), the signed ``checkpoint`` s that fall inside the exported
range, and a ``footer`` with the count. :func:`audit.export_signing.sign_detached` then
writes the detached OpenPGP signature an outside auditor checks with stock ``gpg``;
:func:`check_export` re-checks the hashes and checkpoints of an export file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from audit import checkpoints
from audit.canonical import GENESIS, chain, encode_object_ids, format_at
from audit.entries import build_query, from_row
from audit.keys import key_id, public_pem
from audit.tables import audit_checkpoint, audit_entry

FORMAT = "caducee-audit-export/1"


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    entries: int
    first_seq: int | None
    last_seq: int | None


def _entry_lines(conn: Connection, q: Any) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    prev_t = audit_entry.alias("prev")
    prev_hash = (
        select(prev_t.c.hash).where(prev_t.c.seq == audit_entry.c.seq - 1).scalar_subquery()
    )
    # The first entry left by a prune has no predecessor row: its ``prev`` is the hash
    # the signed prune checkpoint vouches for (verify anchors the chain there too).
    c = audit_checkpoint.c
    pruned = {
        int(r[0]): bytes(r[1])
        for r in conn.execute(select(c.seq, c.hash).where(c.kind == checkpoints.PRUNE))
    }
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(
        q.add_columns(prev_hash.label("prev_hash"))
    )
    for r in result:
        entry = from_row(r)
        ev = entry.event
        prev = (
            bytes(r[14]) if r[14] is not None
            else GENESIS if entry.seq == 1 else pruned.get(entry.seq - 1)
        )
        yield entry.seq, entry.hash, {
            "type": "entry", "seq": entry.seq, "at": r[1], "action": ev.action,
            "actor": ev.actor, "outcome": ev.outcome, "reason": ev.reason,
            "message_id": ev.message_id, "document_id": ev.document_id,
            "queue_id": ev.queue_id, "patient_ins": ev.patient_ins, "client_ip": ev.client_ip,
            "protocol": ev.protocol, "object_ids": [list(p) for p in ev.object_ids],
            "prev": prev.hex() if prev is not None else None, "hash": entry.hash.hex(),
        }


def export(
    conn: Connection,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    patient_ins: str | None = None,
    journal_key: Ed25519PublicKey | None = None,
    retired_keys: Sequence[Ed25519PublicKey] = (),
) -> ExportResult:
    """Write the entries with ``since <= at < until`` (and ``patient_ins``) to ``out``.

    ``journal_key`` is the current journal public key; ``retired_keys`` those it replaced
    (``caducee audit rotate-key``), listed too so that older checkpoints can be checked.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    q = build_query(since=since, until=until, patient_ins=patient_ins)
    count, first, last = 0, None, None
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with tmp.open("w", encoding="utf-8") as f:
        header: dict[str, Any] = {
            "type": "header", "format": FORMAT,
            "generated_at": format_at(datetime.now(UTC)),
            "from": format_at(since) if since else None,
            "to": format_at(until) if until else None,
            "patient_ins": patient_ins,
            "journal_key_id": key_id(journal_key) if journal_key else None,
            "journal_public_key": public_pem(journal_key) if journal_key else None,
            "retired_journal_public_keys": {key_id(k): public_pem(k) for k in retired_keys},
            "hash": "sha256(bytes.fromhex(prev) + canonical), canonical = the UTF-8 bytes "
                    "of the compact JSON array (separators ',' ':', non-ASCII characters "
                    "written as themselves, not \\u-escaped) of [seq, at, action, actor, "
                    "outcome, reason, message_id, document_id, queue_id, patient_ins, "
                    "client_ip, protocol, compact JSON text of object_ids]",
        }
        f.write(dumps(header) + "\n")
        for seq, _hash, line in _entry_lines(conn, q):
            f.write(dumps(line) + "\n")
            count += 1
            first = seq if first is None else first
            last = seq
        if first is not None and last is not None:
            c = audit_checkpoint.c
            rows = conn.execute(
                select(c.seq, c.hash, c.at, c.kind, c.key_id, c.signature)
                .where(
                    (c.seq >= first) & (c.seq <= last)
                    # a prune checkpoint just before: the first entry's ``prev`` comes
                    # from it (only the first entry left by a prune has none in the table)
                    | ((c.seq == first - 1) & (c.kind == checkpoints.PRUNE))
                )
                .order_by(c.id)
            ).all()
            for r in rows:
                cp = checkpoints.Checkpoint(r[0], bytes(r[1]), r[2], r[3], r[4], bytes(r[5]))
                f.write(dumps({"type": "checkpoint", **json.loads(cp.to_json())}) + "\n")
        f.write(dumps({"type": "footer", "entries": count, "first_seq": first,
                       "last_seq": last}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out)
    return ExportResult(out, count, first, last)


@dataclass
class ExportCheck:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_export(path: Path, keys: Mapping[str, Ed25519PublicKey] | None = None) -> ExportCheck:
    """Re-hash every entry of an export; check its checkpoints against the journal key
    (given, or the one in the header) and against the exported entries."""
    result = ExportCheck()
    hashes: dict[int, bytes] = {}
    prevs: dict[int, bytes] = {}
    prev_seq: int | None = None
    prev_hash: bytes | None = None
    ring: dict[str, Ed25519PublicKey] = dict(keys or {})
    with Path(path).open(encoding="utf-8") as f:
        for lineno, text in enumerate(f, 1):
            try:
                d = json.loads(text)
                kind = d["type"]
            except (ValueError, KeyError, TypeError):
                result.problems.append(f"ligne {lineno} : illisible")
                continue
            if kind == "header" and not keys:
                ring.update(_header_keys(d))
            elif kind == "entry":
                result.entries += 1
                seq = int(d["seq"])
                vals = (
                    seq, d["at"], d["action"], d["actor"], d["outcome"], d["reason"],
                    d["message_id"], d["document_id"], d["queue_id"], d["patient_ins"],
                    d["client_ip"], d["protocol"],
                    encode_object_ids([tuple(p) for p in d["object_ids"]])
                    if d["object_ids"] else "[]",
                )
                h = bytes.fromhex(d["hash"])
                prev = bytes.fromhex(d["prev"]) if d["prev"] else None
                if prev is None or chain(prev, vals) != h:
                    result.problems.append(f"ligne {lineno} : l'entrée {seq} ne correspond pas "
                                           "à son empreinte")
                if prev_seq is not None and seq == prev_seq + 1 and prev != prev_hash:
                    result.problems.append(f"ligne {lineno} : l'entrée {seq} ne suit pas "
                                           f"l'entrée {prev_seq}")
                prev_seq, prev_hash = seq, h
                hashes[seq] = h
                if prev is not None:
                    prevs[seq] = prev
            elif kind == "checkpoint":
                result.checkpoints += 1
                cp = checkpoints.Checkpoint.from_json(json.dumps({k: v for k, v in d.items()
                                                                  if k != "type"}))
                if not checkpoints.signature_ok(cp, ring):
                    result.problems.append(f"ligne {lineno} : point de contrôle {cp.seq} "
                                           "non vérifiable")
                    continue
                if cp.seq in hashes and hashes[cp.seq] != cp.hash:
                    result.problems.append(f"ligne {lineno} : l'entrée {cp.seq} diffère du "
                                           "point de contrôle signé")
                elif (cp.seq not in hashes and cp.kind == checkpoints.PRUNE
                      and cp.seq + 1 in prevs and prevs[cp.seq + 1] != cp.hash):
                    result.problems.append(f"ligne {lineno} : l'entrée {cp.seq + 1} ne suit "
                                           "pas le point de contrôle signé de la purge")
    return result


def _header_keys(header: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The journal public keys (current and retired) named by an export's header."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pems = [header.get("journal_public_key")]
    retired = header.get("retired_journal_public_keys")
    if isinstance(retired, dict):
        pems += list(retired.values())
    ring: dict[str, Ed25519PublicKey] = {}
    for pem in pems:
        if not isinstance(pem, str):
            continue
        try:
            loaded = load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            continue
        if isinstance(loaded, Ed25519PublicKey):
            ring[key_id(loaded)] = loaded
    return ring
