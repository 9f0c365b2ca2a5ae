"""A writer process for the concurrency test: ``python -m tests.audit.concurrent_writer``.

Arguments: database URL, journal key file, worker number, entries, entries per append.
Each append is its own transaction (like one group commit carrying one job).
"""

from __future__ import annotations

import sys
from pathlib import Path

from audit.events import Action, AuditEvent
from audit.journal import Journal
from audit.keys import load_journal_key
from mailstore.db import create_db_engine


def main(argv: list[str]) -> int:
    url, key_file, worker, total, batch = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    journal = Journal(load_journal_key(Path(key_file)), checkpoint_every=1000)
    engine = create_db_engine(url, pool_size=1)
    done = 0
    while done < total:
        k = min(batch, total - done)
        events = [
            AuditEvent(Action.MESSAGE_ACCEPTED, f"service:worker-{worker}",
                       queue_id=f"{worker}:{done + j}", protocol="smtp")
            for j in range(k)
        ]
        with engine.begin() as conn:
            journal.append(conn, events)
        done += k
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
