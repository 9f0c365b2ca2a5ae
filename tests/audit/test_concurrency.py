"""Several OS processes append to one PostgreSQL journal: one gap-free, valid chain.

Two shapes of load, 4 processes × 10,000 entries each:

* ``hot``: appends of 1 to 8 entries, as the group commit's jobs carry them in
  production — the journal's compare-and-set hot path (one statement on PostgreSQL,
  ``_PG_CAS_MAX`` = 64), with real conflicts between processes falling back to the
  locked slow path inside the same transaction;
* ``bulk``: appends of 100 entries (above the compare-and-set limit: imports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.journal import _PG_CAS_MAX
from audit.keys import create_journal_key, key_ring, load_journal_key
from audit.tables import audit_entry
from audit.verify import verify
from caducee.dbschema import upgrade
from mailstore.db import create_db_engine
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
PER_WORKER = 10_000
CHECKPOINT_EVERY = 1000  # as in tests.audit.concurrent_writer


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "largest"), [("random", 8), ("fixed", 100)],
                         ids=["hot", "bulk"])
def test_four_processes_one_gap_free_chain(
    pg_server: PostgresServer, tmp_path: Path, shape: str, largest: int
) -> None:
    assert shape == "fixed" or largest <= _PG_CAS_MAX
    url = pg_server.create_database()
    engine = create_db_engine(url)
    upgrade(engine)
    key_file = tmp_path / "journal.key"
    create_journal_key(key_file)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.concurrent_writer", url, str(key_file),
             str(w), str(PER_WORKER), str(largest), shape],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for w in range(WORKERS)
    ]
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=280)
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
        stats.append(json.loads(out.decode().strip().splitlines()[-1]))
    if shape == "random":
        # the hot path hit (inside the writers' exclusive bursts), and real cross-process
        # conflicts sent appends to the slow path between them
        assert all(s["hot"] > 0 for s in stats), stats
        assert sum(s["moved"] for s in stats) > 0, stats
    key = load_journal_key(key_file).public_key()

    with engine.connect() as conn:
        report = verify(conn, key_ring([key]))
        total = WORKERS * PER_WORKER
        assert report.ok, report.problems[:5]
        assert report.entries == total and report.first_seq == 1 and report.last_seq == total
        assert report.last_checkpoint_seq >= total - CHECKPOINT_EVERY  # signed on the way
        seq = audit_entry.c.seq
        assert conn.execute(select(func.count(), func.min(seq), func.max(seq))).one() == (
            total, 1, total
        )
        # each worker's entries keep their own order
        for w in range(WORKERS):
            qids = conn.execute(
                select(audit_entry.c.queue_id)
                .where(audit_entry.c.actor == f"service:worker-{w}")
                .order_by(seq)
            ).scalars().all()
            assert qids == [f"{w}:{i}" for i in range(PER_WORKER)]
    engine.dispose()
