"""A writer process for the concurrency test: ``python -m tests.audit.concurrent_writer``.

Arguments: database URL, journal key file, worker number, entries, largest append, and
``random`` (each append takes 1 to that many entries, like the group commit's jobs) or
``fixed`` (every append takes exactly that many). Each append is its own transaction.

Prints one JSON line: how many appends took the compare-and-set hot path (the journal's
remembered head was still current) and how many found the head moved by another process.
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
    done = hot = moved = 0
    while done < total:
        k = min(sizes.randint(1, largest) if sizes else largest, total - done)
        events = [
            AuditEvent(Action.MESSAGE_ACCEPTED, f"service:worker-{worker}",
                       queue_id=f"{worker}:{done + j}", protocol="smtp")
            for j in range(k)
        ]
        remembered = journal._head  # what the hot path will try to compare-and-set from
        with engine.begin() as conn:
            journal.append(conn, events)
        if remembered is not None:
            if journal._head is not None and journal._head[0] == remembered[0] + k:
                hot += 1
            else:
                moved += 1
        done += k
    engine.dispose()
    print(json.dumps({"hot": hot, "moved": moved}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
