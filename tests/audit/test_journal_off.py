"""With ``[audit] enabled = false`` the journal costs nothing: no write job is submitted for
the events that otherwise ride in a job of their own (logins, refusals), so the journal
on/off benchmark compares like with like."""

from __future__ import annotations

import imaplib
import smtplib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from audit.tables import audit_entry
from mailstore.db import Tx
from tests.support.platform import (
    InProcessPlatform,
    PlatformDir,
    configure,
    database_url,
    make_platform_dir,
)

DOCTOR = "claire.martin@demo.mssante.fr"
PASSWORD = "journal-off-password-1"
WRONG = "not-the-password-7"


def _noop(tx: Tx) -> None:
    return None


def _flush(plat: InProcessPlatform) -> int:
    """Commit everything submitted so far (FIFO) and return the write jobs committed."""
    assert plat.ctx is not None
    db = plat.ctx.db
    plat.call(lambda: db.write(_noop))
    return db.jobs_committed


def _login_failures_and_a_refusal(pdir: PlatformDir, plat: InProcessPlatform) -> None:
    tls = pdir.client_tls()
    imap = imaplib.IMAP4("127.0.0.1", pdir.ports["imap"])
    imap.starttls(tls)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(DOCTOR, WRONG)
    imap.logout()
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=tls)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(DOCTOR, WRONG)
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=tls)
        s.login(DOCTOR, PASSWORD)
        s.docmd("MAIL", f"FROM:<{DOCTOR}>")
        assert s.docmd("RCPT", "TO:<nobody@demo.mssante.fr>")[0] == 550
    assert plat.platform is not None
    port = plat.platform.ports["web"][0]
    with httpx.Client(verify=tls, base_url=f"https://127.0.0.1:{port}") as web:
        assert web.get("/api/directory", params={"q": "x"}, auth=(DOCTOR, WRONG)).status_code == 401


@pytest.mark.parametrize("enabled", [False, True])
def test_journal_off_submits_no_write_job(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, enabled: bool
) -> None:
    url = database_url(request, backend)
    pdir = make_platform_dir(tmp_path / "p", url)
    pdir.add_account(DOCTOR, PASSWORD)
    configure(pdir, "audit", enabled=enabled)
    plat = InProcessPlatform(pdir, services=("submission", "imap", "web")).start()
    try:
        before = _flush(plat)
        _login_failures_and_a_refusal(pdir, plat)
        extra = _flush(plat) - before - 1
        assert plat.ctx is not None
        entries = plat.ctx.db.read_sync(
            lambda c: c.execute(select(func.count()).select_from(audit_entry)).scalar_one()
        )
    finally:
        plat.stop()
    if enabled:
        # IMAP failure, 2 SMTP failures (smtplib tries PLAIN, then LOGIN), SMTP success,
        # the refused RCPT, the web failure: one job each
        assert (extra, entries) == (6, 6)
    else:
        assert (extra, entries) == (0, 0)
