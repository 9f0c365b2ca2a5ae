"""The live platform's flows leave a journal that verifies and holds no content or password."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from audit.tables import audit_entry
from audit.verify import verify
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir

SENDER = "claire.martin@demo.mssante.fr"
RECIPIENT = "paul.lefevre@demo.mssante.fr"
PASSWORD = "Journal-Pa55word"
WRONG = "not-the-password-42"
FILE_NAME = "secret-ordonnance-dupont.pdf"


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformDir]:
    url = database_url(request, request.param)
    pdir = make_platform_dir(tmp_path / "platform", url)
    for address in (SENDER, RECIPIENT):
        pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(pdir, services=("submission",)).start()
    try:
        yield pdir
    finally:
        plat.stop()


def _client(pdir: PlatformDir) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30)
    s.starttls(context=pdir.client_tls())
    s.ehlo("client.test")
    return s


def test_submission_refusal_and_failed_login_are_journaled_and_verify(
    live: PlatformDir,
) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RECIPIENT, "Sujet confidentiel"
    msg.set_content("Contenu médical confidentiel", cte="quoted-printable")
    with _client(live) as s:
        s.login(SENDER, PASSWORD)
        s.send_message(msg)
        s.docmd("MAIL", f"FROM:<{SENDER}>")
        assert s.docmd("RCPT", "TO:<nobody@demo.mssante.fr>")[0] == 550
    with _client(live) as s, pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(RECIPIENT, WRONG)
    # an attachment refused by content: the reply names the file, the journal must not
    bad = EmailMessage()
    bad["From"], bad["To"], bad["Subject"] = SENDER, RECIPIENT, "Ordonnance jointe"
    bad.set_content("voir la pièce jointe", cte="quoted-printable")
    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    bad.add_attachment(exe, maintype="application", subtype="pdf", filename=FILE_NAME)
    with _client(live) as s:
        s.login(SENDER, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused_data:
            s.send_message(bad)
    assert refused_data.value.smtp_code == 554
    assert FILE_NAME.encode() in refused_data.value.smtp_error

    ctx = live.context()
    try:
        def rows(conn: Connection) -> list[Any]:
            return list(conn.execute(select(audit_entry).order_by(audit_entry.c.seq)).mappings())

        def all_seen() -> list[Any] | None:
            got = ctx.db.read_sync(rows)
            actions = {r["action"] for r in got}
            wanted = {"login.succeeded", "login.failed", "message.accepted", "message.refused"}
            reasons = {r["reason"] for r in got}
            return got if wanted <= actions and "attachment_type_refused" in reasons else None

        entries: Any = wait_for(all_seen, 10, "journal entries of the flows")
        cfg = live.config
        report = ctx.db.read_sync(
            lambda conn: verify(conn, ctx.journal.verify_keys, cfg.audit.checkpoint_file)
        )
    finally:
        ctx.close()
    assert report.ok, report.problems
    assert report.entries == len(entries)
    refused = [r for r in entries if r["action"] == "message.refused"]
    assert [(r["reason"], r["outcome"], r["actor"]) for r in refused] == [
        ("unknown_recipient", "refused", SENDER),
        ("attachment_type_refused", "refused", SENDER),
    ]
    # the envelope addresses concerned are named (identifiers, not content)
    assert '"nobody@demo.mssante.fr"' in refused[0]["object_ids"]
    assert f'"{SENDER}"' in refused[0]["object_ids"]
    assert f'"{SENDER}"' in refused[1]["object_ids"]
    failed = [r for r in entries if r["action"] == "login.failed"]
    assert failed[0]["client_ip"] == "127.0.0.1"
    assert {(r["outcome"], r["reason"]) for r in failed} == {("failed", "auth_failed")}
    text = repr(entries)
    for secret in (PASSWORD, WRONG, "Sujet confidentiel", "Contenu médical", FILE_NAME,
                   "secret-ordonnance", "Ordonnance jointe"):
        assert secret not in text


def test_refusal_entries_name_envelope_addresses_never_the_detail() -> None:
    from caducee.runner import refusal_recorder
    from policy.decision import Reason

    got: list[Any] = []
    record = refusal_recorder(got.append, "smtp")
    record(SENDER, "192.0.2.7", Reason.ATTACHMENT_TYPE_REFUSED, FILE_NAME,
           sender=SENDER, recipient=RECIPIENT)
    record("anonymous", None, Reason.UNKNOWN_RECIPIENT, "", sender="")
    record(SENDER, None, Reason.DOMAIN_NOT_TRUSTED, "")
    assert [(e.action, e.reason, e.protocol, e.object_ids) for e in got] == [
        ("message.refused", "attachment_type_refused", "smtp",
         (("sender", SENDER), ("recipient", RECIPIENT))),
        ("message.refused", "unknown_recipient", "smtp", (("sender", "<>"),)),
        ("message.refused", "domain_not_trusted", "smtp", ()),
    ]
    assert FILE_NAME not in repr(got)
