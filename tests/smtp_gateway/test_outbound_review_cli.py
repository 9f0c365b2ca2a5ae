"""`caducee queue show|retry` with ids that are unknown, being delivered, or out of range."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import update

from caducee.cli import main
from mailstore.queue_tables import ACTIVE, queue_entry
from smtp_gateway import queue_store
from tests.smtp_gateway.test_queue_cli import pdir
from tests.support.platform import PlatformDir

__all__ = ["pdir"]  # the fixture of test_queue_cli: two entries, due in an hour


def run(pdir: PlatformDir, capsys: pytest.CaptureFixture[str], *args: str
        ) -> tuple[int, str, str]:
    umask = os.umask(0o022)
    try:
        code = main(["-c", str(pdir.config_path), "queue", *args])
    except SystemExit as exc:  # argparse refusing an argument
        code = int(exc.code or 0)
    finally:
        os.umask(umask)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", ["show", "retry"])
@pytest.mark.parametrize("value", ["99999999999999999999", "2147483648", "0", "-3", "QCLI1"])
def test_an_id_out_of_range_is_refused_without_a_traceback(
    pdir: PlatformDir, capsys: pytest.CaptureFixture[str], command: str, value: str
) -> None:
    code, _, err = run(pdir, capsys, command, value)
    assert code == 2
    assert f"invalid queue entry id '{value}'" in err and "Traceback" not in err


def test_retry_names_the_ids_it_could_not_make_due(
    pdir: PlatformDir, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = pdir.context()
    try:
        first, second = (e.id for e in ctx.db.read_sync(queue_store.list_entries))
        ctx.db.write_sync(lambda tx: tx.conn.execute(
            update(queue_entry).where(queue_entry.c.id == second)
            .values(state=ACTIVE, lease_owner="node-b:42")))
    finally:
        ctx.close()
    code, out, err = run(pdir, capsys, "retry", str(first), str(second), "424242")
    assert code == 0
    assert out.strip() == "1 of 3 entries made due"
    assert "caducee: no queue entry 424242" in err
    assert f"caducee: queue entry {second} is being delivered (leased by node-b:42)" in err
    code, out, err = run(pdir, capsys, "retry", "424242")
    assert (code, out.strip(), err.strip()) == (1, "0 of 1 entries made due",
                                                 "caducee: no queue entry 424242")
