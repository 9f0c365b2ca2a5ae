"""`caducee queue list|show|retry|flush` on a real platform directory."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from caducee.cli import main
from mailstore.accounts import get_by_address
from mailstore.queue_tables import queue_entry
from smtp_gateway import queue_store
from tests.support.platform import PlatformDir, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"


@pytest.fixture
def pdir(tmp_path: Path) -> PlatformDir:
    p = make_platform_dir(tmp_path)
    p.add_account(CLAIRE)
    ctx = p.context()
    try:
        acc = ctx.db.read_sync(lambda c: get_by_address(c, CLAIRE))
        assert acc is not None
        later = datetime.now(UTC) + timedelta(hours=1)
        ctx.db.write_sync(lambda tx: queue_store.enqueue(
            tx.conn, ctx.keystore, account_id=acc.id, sender=CLAIRE,
            recipients=["dr.x@autre.mssante.fr", "dr.y@autre.mssante.fr"],
            raw=b"Subject: Secret CR\r\n\r\nbody\r\n", queue_id="QCLI1",
            message_id="<cli@x>", now=datetime.now(UTC), max_age=timedelta(days=5)))
        ctx.db.write_sync(lambda tx: tx.conn.execute(update(queue_entry).values(
            next_attempt=later, attempts=2, last_error="mx.autre: 451 4.3.0 busy")))
    finally:
        ctx.close()
    return p


def run(pdir: PlatformDir, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    umask = os.umask(0o022)
    try:
        code = main(["-c", str(pdir.config_path), "queue", *args])
    finally:
        os.umask(umask)  # main() sets a private umask for the process
    return code, capsys.readouterr().out


def test_list_show_retry_flush(pdir: PlatformDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(pdir, capsys, "list")
    assert code == 0
    assert "dr.x@autre.mssante.fr" in out and "451 4.3.0 busy" in out and "2 entries" in out
    assert "Secret" not in out  # metadata only
    code, out = run(pdir, capsys, "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["recipient"] for r in rows] == ["dr.x@autre.mssante.fr", "dr.y@autre.mssante.fr"]
    first = rows[0]["id"]
    code, out = run(pdir, capsys, "show", str(first))
    assert code == 0 and "QCLI1" in out and "attempts         2" in out
    assert run(pdir, capsys, "show", "999999")[0] == 1
    code, out = run(pdir, capsys, "retry", str(first))
    assert (code, out.strip()) == (0, "1 entry will be retried now")
    code, out = run(pdir, capsys, "flush")
    assert (code, out.strip()) == (0, "2 entries will be retried now")
    code, _ = run(pdir, capsys, "list", "--json")
    now = datetime.now(UTC)
    ctx = pdir.context()
    try:
        entries = ctx.db.read_sync(queue_store.list_entries)
    finally:
        ctx.close()
    assert all(e.next_attempt <= now for e in entries)
