"""A writer process for the concurrency test: ``python -m tests.audit.concurrent_writer``.

Arguments: database URL, journal key file, worker number, entries, largest append, and
``random`` (each append takes 1 to that many entries, like the group commit's jobs) or
``fixed`` (every append takes exactly that many). Each append is its own transaction.

Prints one JSON line: how many appends took the compare-and-set hot path (the journal's
remembered head was still current), how many found the head moved by another process, and
how many took the locked slow path (after a miss, or backing off after one).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from audit.events import Action, AuditEvent
from audit.journal import Journal
from audit.keys import load_journal_key
from mailstore.db import create_db_engine


def main(argv: list[str]) -> int:
    url, key_file, worker, total, largest = (
        argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    )
    sizes = random.Random(worker) if argv[5] == "random" else None
    journal = Journal(load_journal_key(Path(key_file)), checkpoint_every=1000)
    engine = create_db_engine(url, pool_size=1)
    done = 0
    while done < total:
        k = min(sizes.randint(1, largest) if sizes else largest, total - done)
        events = [
            AuditEvent(Action.MESSAGE_ACCEPTED, f"service:worker-{worker}",
                       queue_id=f"{worker}:{done + j}", protocol="smtp")
            for j in range(k)
        ]
        with engine.begin() as conn:
            journal.append(conn, events)
        done += k
    engine.dispose()
    print(json.dumps({"hot": journal.cas_hits, "moved": journal.cas_misses,
                      "slow": journal.slow_appends}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
