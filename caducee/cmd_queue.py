"""`caducee queue list|show|retry|flush`: the outbound queue (docs/outbound.md).

Metadata only: envelope, attempts, next attempt, last error. The queued bytes stay
encrypted; nothing here prints a message's content.

``retry`` and ``flush`` make entries due now. A runner in another process sees them at its
next look at the queue (at most a minute: ``max_sleep``), or at once if new mail arrives.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from caducee import config as config_mod
from caducee.cli import CliError
from caducee.context import open_context
from mailstore.db import Tx
from mailstore.queue_tables import QUEUED
from smtp_gateway import queue_store
from smtp_gateway.queue_store import Entry

T = TypeVar("T")

#: ``queue_entry.id`` is an ``INTEGER``: 32 bits on PostgreSQL (64 on SQLite).
_MAX_ID = 2**31 - 1


def entry_id(text: str) -> int:
    """An entry id as ``caducee queue list`` shows it (argparse type): an id out of the
    column's range would otherwise reach the database driver and end in a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid queue entry id {text!r} (the ID column of 'caducee queue list')"
        ) from None
    if not 1 <= value <= _MAX_ID:
        raise argparse.ArgumentTypeError(f"invalid queue entry id {text!r} (out of range)")
    return value


def register(sub: Any) -> None:
    q = sub.add_parser("queue", help="the outbound queue (mail for other operators)")
    s = q.add_subparsers(dest="queue_cmd", required=True)

    ls = s.add_parser("list", help="list queued entries (one per remote recipient)")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    ls.add_argument("--limit", type=int, default=1000)
    ls.set_defaults(func=cmd_list)

    show = s.add_parser("show", help="details of one entry")
    show.add_argument("entry", type=entry_id)
    show.set_defaults(func=cmd_show)

    retry = s.add_parser("retry", help="try these entries again now")
    retry.add_argument("entries", type=entry_id, nargs="+")
    retry.set_defaults(func=cmd_retry)

    flush = s.add_parser("flush", help="try every waiting entry again now")
    flush.set_defaults(func=cmd_flush)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _as_dict(e: Entry) -> dict[str, Any]:
    return {
        "id": e.id, "queue_id": e.queue_id, "message_id": e.message_id,
        "sender": e.sender, "recipient": e.recipient, "domain": e.domain, "state": e.state,
        "attempts": e.attempts, "next_attempt": e.next_attempt.isoformat(),
        "expires_at": e.expires_at.isoformat(), "created_at": e.created_at.isoformat(),
        "last_attempt_at": e.last_attempt_at.isoformat() if e.last_attempt_at else None,
        "last_error": e.last_error, "size": e.size, "lease_owner": e.lease_owner,
    }


def cmd_list(args: argparse.Namespace) -> int:
    ctx = open_context(config_mod.load(args.config), readers=1)
    try:
        entries = ctx.db.read_sync(lambda c: queue_store.list_entries(c, limit=args.limit))
    finally:
        ctx.close()
    if args.json:
        for e in entries:
            print(json.dumps(_as_dict(e), ensure_ascii=False))
        return 0
    if not entries:
        print("the queue is empty")
        return 0
    print(f"{'ID':>6}  {'QUEUE ID':<14}  {'STATE':<6}  {'TRIES':>5}  {'NEXT ATTEMPT (UTC)':<19}  "
          "RECIPIENT / LAST ERROR")
    for e in entries:
        print(f"{e.id:>6}  {e.queue_id:<14}  {e.state:<6}  {e.attempts:>5}  "
              f"{_when(e.next_attempt):<19}  {e.recipient}")
        if e.last_error:
            print(f"{'':>58}{e.last_error[:120]}")
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ctx = open_context(config_mod.load(args.config), readers=1)
    try:
        entry = ctx.db.read_sync(lambda c: queue_store.get_entry(c, args.entry))
    finally:
        ctx.close()
    if entry is None:
        raise CliError(f"no queue entry {args.entry}")
    for key, value in _as_dict(entry).items():
        print(f"{key:<16} {'-' if value is None else value}")
    return 0


def _write(args: argparse.Namespace, job: Callable[[Tx], T]) -> T:
    """Run ``job`` in one write transaction of the configured database."""
    ctx = open_context(config_mod.load(args.config), readers=1)
    try:
        return ctx.db.write_sync(job)
    finally:
        ctx.close()


def cmd_retry(args: argparse.Namespace) -> int:
    ids = sorted(set(args.entries))
    now = datetime.now(UTC)

    def job(tx: Tx) -> tuple[dict[int, Entry], int]:
        found = {i: queue_store.get_entry(tx.conn, i) for i in ids}
        known = {i: e for i, e in found.items() if e is not None}
        return known, queue_store.make_due(tx.conn, now=now, entry_ids=ids)

    known, changed = _write(args, job)
    # Say which ids were not made due, and why (on stderr, as other command errors).
    for i in ids:
        entry = known.get(i)
        if entry is None:
            print(f"caducee: no queue entry {i}", file=sys.stderr)
        elif entry.state != QUEUED:
            print(f"caducee: queue entry {i} is being delivered "
                  f"(leased by {entry.lease_owner or '?'}): left as it is", file=sys.stderr)
    if changed < len(ids):
        print(f"{changed} of {len(ids)} entries made due")
        return 1 if changed == 0 else 0
    print(f"{changed} entr{'y' if changed == 1 else 'ies'} will be retried now")
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    changed = _write(args, lambda tx: queue_store.make_due(tx.conn, now=now))
    print(f"{changed} entr{'y' if changed == 1 else 'ies'} will be retried now")
    return 0
