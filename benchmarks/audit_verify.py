"""Benchmark: `verify` speed over 1,000,000 journal entries (target ≥ 100,000 entries/s).

Also prints the hot-path cost of :meth:`Journal.append` (one event per job, each job in a
SAVEPOINT of one shared transaction, as the group-commit writer runs them).

    .venv/bin/python -m benchmarks.audit_verify [--entries N] [--backend sqlite|postgresql|both]

PostgreSQL is started by the test harness (tests/support/postgres.py) on a free port.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.events import Action, AuditEvent
from audit.journal import Journal
from audit.verify import verify
from caducee.dbschema import upgrade
from mailstore.db import create_db_engine

TARGET = 100_000


def _events(start: int, n: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            Action.MESSAGE_ACCEPTED, f"dr.{i % 97}@hopital-{i % 13}.example",
            message_id=f"<{i:012d}.caducee@mail.example>", queue_id=f"Q{i:010d}",
            patient_ins="255081416802538" if i % 5 == 0 else None,
            client_ip="192.0.2.10", protocol="smtp",
            object_ids=(("mailbox_uid", f"{i % 31}/{i}"),),
        )
        for i in range(start, start + n)
    ]


def run(url: str, entries: int) -> None:
    engine = create_db_engine(url, pool_size=2)
    upgrade(engine)
    journal = Journal(Ed25519PrivateKey.generate(), checkpoint_every=1000)

    # -- fill ---------------------------------------------------------------------------------
    t = time.perf_counter()
    batch, per_tx = 1000, 50
    done = 0
    while done < entries:
        with engine.begin() as conn:
            for _ in range(per_tx):
                if done >= entries:
                    break
                k = min(batch, entries - done)
                journal.append(conn, _events(done, k))
                done += k
    fill_s = time.perf_counter() - t
    print(f"  filled {entries:,} entries in {fill_s:.1f} s "
          f"({entries / fill_s:,.0f} entries/s in batches of {batch})")

    # -- verify -------------------------------------------------------------------------------
    with engine.connect() as conn:
        report = verify(conn, journal.verify_keys)
    assert report.ok, report.problems[:3]
    assert report.entries == entries
    rate = entries / report.seconds
    print(f"  verify: {report.entries:,} entries, {report.checkpoints} checkpoints in "
          f"{report.seconds:.2f} s = {rate:,.0f} entries/s "
          f"(target ≥ {TARGET:,}: {'met' if rate >= TARGET else 'NOT met'}, "
          f"ratio {rate / TARGET:.2f})")

    # -- the hot path: one event per job, each job in a savepoint ----------------------------
    jobs = 2000
    ev = _events(0, 1)
    for enabled in (False, True):
        journal.enabled = enabled
        t = time.perf_counter()
        with engine.begin() as conn:
            for _ in range(jobs):
                sp = conn.begin_nested()
                journal.append(conn, ev)
                sp.commit()
        dt = time.perf_counter() - t
        print(f"  append, journal {'on ' if enabled else 'off'}: {dt / jobs * 1e6:7.1f} µs per "
              "job (savepoint + append of 1 event)")
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}:")
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="caducee-bench-") as d:
                run(f"sqlite:///{d}/bench.db", args.entries)
        else:
            from tests.support.postgres import PostgresServer

            pg = PostgresServer()
            pg.start()
            try:
                run(pg.create_database(), args.entries)
            finally:
                pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
