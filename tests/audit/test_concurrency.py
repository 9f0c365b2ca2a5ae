"""Several OS processes append to one PostgreSQL journal: one gap-free, valid chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from audit.keys import create_journal_key, load_journal_key
from audit.tables import audit_entry
from audit.verify import verify
from caducee.dbschema import upgrade
from mailstore.db import create_db_engine
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
PER_WORKER = 10_000
BATCH = 100


def test_four_processes_one_gap_free_chain(pg_server: PostgresServer, tmp_path: Path) -> None:
    url = pg_server.create_database()
    engine = create_db_engine(url)
    upgrade(engine)
    key_file = tmp_path / "journal.key"
    create_journal_key(key_file)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.concurrent_writer", url, str(key_file),
             str(w), str(PER_WORKER), str(BATCH)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for w in range(WORKERS)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
    key = load_journal_key(key_file).public_key()
    from audit.keys import key_ring

    with engine.connect() as conn:
        report = verify(conn, key_ring([key]))
        total = WORKERS * PER_WORKER
        assert report.ok, report.problems[:5]
        assert report.entries == total and report.first_seq == 1 and report.last_seq == total
        assert report.last_checkpoint_seq >= total - BATCH  # checkpoints signed on the way
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
