"""An accepted message and its journal entry commit together or not at all
(ARCHITECTURE.md §2 flow 1, docs/audit.md "Same transaction").

The journal is made to fail for real: a database trigger refuses the insert of a
``message.accepted`` entry, inside the delivery's write job. The client must get
``451 4.3.0``, and nothing may be stored, queued or journaled for that message.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text

from audit.tables import audit_entry
from audit.verify import verify
from mailstore.queue_tables import queue_entry
from mailstore.tables import account, mailbox, message
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir

SENDER = "claire.martin@demo.mssante.fr"
LOCAL = "paul.lefevre@demo.mssante.fr"
REMOTE = "dr.x@autre-operateur.mssante.fr"
PASSWORD = "atomic-password-1"

_SQLITE_TRIGGER = (
    "CREATE TRIGGER refuse_accepted BEFORE INSERT ON audit_entry "
    "WHEN NEW.action = 'message.accepted' BEGIN SELECT RAISE(ABORT, 'journal refused'); END"
)
_PG_TRIGGER = (
    "CREATE FUNCTION refuse_journal() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'journal refused'; END $$",
    "CREATE TRIGGER refuse_accepted BEFORE INSERT ON audit_entry FOR EACH ROW "
    "WHEN (NEW.action = 'message.accepted') EXECUTE FUNCTION refuse_journal()",
)


@pytest.fixture
def live(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[
    tuple[PlatformDir, InProcessPlatform]
]:
    url = database_url(request, backend)
    pdir = make_platform_dir(tmp_path / "p", url)
    for address in (SENDER, LOCAL):
        pdir.add_account(address, PASSWORD)
    pdir.trust("autre-operateur.mssante.fr")
    plat = InProcessPlatform(pdir, services=("submission",)).start()
    try:
        yield pdir, plat
    finally:
        plat.stop()


def _ddl(pdir: PlatformDir, statements: tuple[str, ...]) -> None:
    ctx = pdir.context()
    try:
        def job(tx: object) -> None:
            conn: Connection = tx.conn  # type: ignore[attr-defined]
            for sql in statements:
                conn.execute(text(sql))

        ctx.db.write_sync(job)
    finally:
        ctx.close()


def _send(pdir: PlatformDir, subject: str, mid: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, f"{LOCAL}, {REMOTE}", subject
    msg["Message-ID"] = mid
    msg.set_content("corps")
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(SENDER, PASSWORD)
        s.send_message(msg, to_addrs=[LOCAL, REMOTE])


def _counts(pdir: PlatformDir) -> tuple[int, int, int, int]:
    """(messages of the recipient, messages of the sender, queue entries, acceptances)."""
    ctx = pdir.context()
    try:
        def read(conn: Connection) -> tuple[int, int, int, int]:
            def stored(address: str) -> int:
                return int(conn.execute(
                    select(func.count()).select_from(message.join(mailbox).join(account))
                    .where(account.c.address == address)).scalar_one())

            queued = conn.execute(select(func.count()).select_from(queue_entry)).scalar_one()
            accepted = conn.execute(select(func.count()).select_from(audit_entry).where(
                audit_entry.c.action == "message.accepted")).scalar_one()
            return stored(LOCAL), stored(SENDER), int(queued), int(accepted)

        return ctx.db.read_sync(read)
    finally:
        ctx.close()


@pytest.mark.allow_crash  # the refused journal insert is logged with its traceback
def test_failed_journal_append_stores_and_queues_nothing(
    live: tuple[PlatformDir, InProcessPlatform], backend: str
) -> None:
    pdir, _plat = live
    before = _counts(pdir)
    assert before[3] == 0
    _ddl(pdir, (_SQLITE_TRIGGER,) if backend == "sqlite" else _PG_TRIGGER)
    with pytest.raises(smtplib.SMTPDataError) as failed:
        _send(pdir, "ne doit pas rester", "<atomic-1@test.caducee>")
    assert failed.value.smtp_code == 451
    error = failed.value.smtp_error
    assert isinstance(error, bytes) and error.startswith(b"4.3.0 Temporary failure, try again")
    assert _counts(pdir) == before, "nothing stored, queued or journaled"

    _ddl(pdir, ("DROP TRIGGER refuse_accepted",) if backend == "sqlite"
         else ("DROP TRIGGER refuse_accepted ON audit_entry",))
    _send(pdir, "passe", "<atomic-2@test.caducee>")
    local, _sender, queued, accepted = _counts(pdir)
    assert (local - before[0], queued - before[2], accepted) == (1, 1, 1)

    ctx = pdir.context()
    try:
        report = ctx.db.read_sync(lambda c: verify(c, ctx.journal.verify_keys))
        mids = ctx.db.read_sync(lambda c: set(c.execute(
            select(audit_entry.c.message_id).where(audit_entry.c.message_id.is_not(None))
        ).scalars()))
    finally:
        ctx.close()
    assert report.ok, report.problems  # the failed job left no gap in the chain
    assert mids == {"<atomic-2@test.caducee>"}
