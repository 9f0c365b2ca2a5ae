"""Retention: remove old entries, only behind a signed checkpoint.

Two steps, so that the long verification does not hold the journal's head lock:

1. :func:`plan_prune` (any connection): finds the boundary ``B`` — the last entry before
   the first one written at or after ``before`` — and verifies the chain up to ``B``.
   A journal that does not verify is never pruned: that would destroy the evidence.
2. :func:`apply_prune` (the caller's write transaction): locks the head, checks that
   entry ``B`` still has the verified hash, signs a ``prune`` checkpoint at ``B``, deletes
   entries up to ``B``, records ``pruned_through`` and journals the prune itself.

``verify`` then anchors the remaining chain on that signed prune checkpoint; entries
removed any other way show up as missing. Sync the checkpoint file after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, delete, func, select, update

from audit import checkpoints
from audit.canonical import format_at
from audit.events import Action, AuditEvent
from audit.journal import Journal, lock_head, read_head
from audit.tables import HEAD_ID, audit_entry, audit_head
from audit.verify import VerifyReport, verify

_e = audit_entry.c


class PruneRefused(Exception):
    """The journal does not verify up to the boundary, or the boundary moved."""

    def __init__(self, message: str, report: VerifyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class PrunePlan:
    before: datetime
    #: Entries ``first..boundary`` will be removed (``boundary == 0``: nothing to do).
    first: int
    boundary: int
    boundary_hash: bytes


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: int
    boundary: int
    checkpoint: checkpoints.Checkpoint | None


def plan_prune(
    conn: Connection,
    before: datetime,
    keys: Mapping[str, Ed25519PublicKey],
    checkpoint_file: Path | None = None,
) -> PrunePlan:
    head = read_head(conn)
    first = conn.execute(select(func.min(_e.seq))).scalar()
    if head is None or first is None:
        return PrunePlan(before, 0, 0, b"")
    newer = conn.execute(select(func.min(_e.seq)).where(_e.at >= format_at(before))).scalar()
    boundary = (int(newer) - 1) if newer is not None else head.seq
    if boundary < int(first):
        return PrunePlan(before, int(first), 0, b"")
    report = verify(conn, keys, checkpoint_file, upto=boundary)
    if not report.ok or report.last_seq != boundary or report.last_hash is None:
        raise PruneRefused(
            "le journal ne se vérifie pas jusqu'à la limite de suppression : rien n'est "
            "supprimé (ce serait effacer des preuves)",
            report,
        )
    return PrunePlan(before, int(first), boundary, report.last_hash)


def apply_prune(
    conn: Connection, journal: Journal, plan: PrunePlan, actor: str
) -> PruneResult:
    """Run in a write transaction; the caller commits, then syncs the checkpoint file."""
    if plan.boundary == 0:
        return PruneResult(0, 0, None)
    if journal.signing_key is None:
        raise PruneRefused("no journal key: a prune needs a signed checkpoint")
    head = lock_head(conn)
    stored = conn.execute(select(_e.hash).where(_e.seq == plan.boundary)).scalar()
    if stored is None or bytes(stored) != plan.boundary_hash or head.seq < plan.boundary:
        raise PruneRefused("le journal a changé depuis sa vérification : recommencez")
    now = format_at(journal.clock())
    cp = checkpoints.sign(
        journal.signing_key, plan.boundary, plan.boundary_hash, now, checkpoints.PRUNE
    )
    checkpoints.store(conn, cp)
    removed = conn.execute(delete(audit_entry).where(_e.seq <= plan.boundary)).rowcount
    conn.execute(
        update(audit_head).where(audit_head.c.id == HEAD_ID).values(pruned_through=plan.boundary)
    )
    journal.append(
        conn,
        [
            AuditEvent(
                Action.AUDIT_PRUNED, actor, protocol="cli",
                object_ids=(
                    ("through_seq", str(plan.boundary)), ("before", format_at(plan.before)),
                    ("removed", str(removed)),
                ),
            )
        ],
    )
    return PruneResult(int(removed), plan.boundary, cp)
