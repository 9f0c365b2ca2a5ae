"""Fixtures for the audit journal tests: an engine on each backend, a key, a journal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.events import Action, AuditEvent
from audit.journal import Journal
from audit.verify import VerifyReport, verify
from mailstore.db import create_db_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_db_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class StepClock:
    """A clock that moves one minute per call (entries get distinct, increasing times)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def journal(signing_key: Ed25519PrivateKey, tmp_path: Path) -> Journal:
    return Journal(
        signing_key, checkpoint_every=10, checkpoint_file=tmp_path / "audit" / "checkpoints.log",
        clock=StepClock(),
    )


def event(i: int, **kw: object) -> AuditEvent:
    base: dict[str, object] = {
        "action": Action.MESSAGE_ACCEPTED, "actor": f"dr.{i % 7}@hopital.example",
        "message_id": f"<m{i}@caducee.example>", "queue_id": f"Q{i:06d}",
        "client_ip": "192.0.2.10", "protocol": "smtp",
        "object_ids": (("mailbox_uid", f"{i % 3}/{i}"),),
    }
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def fill(engine: Engine, journal: Journal, n: int, per_tx: int = 5, start: int = 0) -> None:
    """Append ``n`` events, ``per_tx`` per transaction, then sync the checkpoint file."""
    i = start
    while i < start + n:
        k = min(per_tx, start + n - i)
        with engine.begin() as conn:
            journal.append(conn, [event(j) for j in range(i, i + k)])
        i += k
    with engine.connect() as conn:
        journal.sync_checkpoint_file(conn)


def check(engine: Engine, journal: Journal, *, with_file: bool = True) -> VerifyReport:
    with engine.connect() as conn:
        return verify(conn, journal.verify_keys, journal.checkpoint_file if with_file else None)
