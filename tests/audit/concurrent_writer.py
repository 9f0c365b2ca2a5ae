"""A writer process for the concurrency test: ``python -m tests.audit.concurrent_writer``.

Arguments: database URL, journal key file, worker number, entries, largest append, and
``random`` (each append takes 1 to that many entries, like the group commit's jobs) or
``fixed`` (every append takes exactly that many). Each append is its own transaction.

Prints one JSON line: how many appends took the compare-and-set hot path (the journal's
remembered head was still current), how many found the head moved by another process, and
how many took the locked slow path (after a miss, or backing off after one).

With ``random``, the appends are not left to chance alone: every ``BURST_EVERY`` appends a
worker takes a PostgreSQL advisory lock exclusively and makes ``BURST`` appends in a row,
while the ordinary appends take it shared. Inside a burst no other process moves the head,
so once the back-off after a miss is spent the compare-and-set must hit; between bursts the
four processes conflict for real.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from sqlalchemy import text

from audit.events import Action, AuditEvent
from audit.journal import _CAS_BACKOFF, Journal
from audit.keys import load_journal_key
from mailstore.db import create_db_engine

#: The advisory lock key the bursts take exclusively and ordinary appends share.
LOCK_KEY = 0x6361_6475
BURST_EVERY = 400
#: Long enough to spend the back-off after a miss, then hit several times.
BURST = _CAS_BACKOFF + 4


def main(argv: list[str]) -> int:
    url, key_file, worker, total, largest = (
        argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    )
    sizes = random.Random(worker) if argv[5] == "random" else None
    journal = Journal(load_journal_key(Path(key_file)), checkpoint_every=1000)
    engine = create_db_engine(url, pool_size=2)
    done = appends = 0
    # The lock is session-level: this connection holds it across a burst's transactions (a
    # burst the end cuts short is released when the engine closes its connections).
    with engine.connect() as lock_conn:
        burst_left = 0
        while done < total:
            if sizes is not None and burst_left == 0 and appends % BURST_EVERY == BURST_EVERY - 1:
                lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                lock_conn.commit()
                burst_left = BURST
            k = min(sizes.randint(1, largest) if sizes else largest, total - done)
            events = [
                AuditEvent(Action.MESSAGE_ACCEPTED, f"service:worker-{worker}",
                           queue_id=f"{worker}:{done + j}", protocol="smtp")
                for j in range(k)
            ]
            with engine.begin() as conn:
                if sizes is not None and not burst_left:
                    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"),
                                 {"k": LOCK_KEY})
                journal.append(conn, events)
            done += k
            appends += 1
            if burst_left:
                burst_left -= 1
                if not burst_left:
                    lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    lock_conn.commit()
    engine.dispose()
    print(json.dumps({"hot": journal.cas_hits, "moved": journal.cas_misses,
                      "slow": journal.slow_appends}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
