"""The rules of the trust space end to end: professionals write over SMTP, the patient
replies through the send API (issue 7, "Must hold")."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from audit.tables import audit_entry
from mailstore import accounts, messages
from mailstore.policy_store import list_permissions
from mailstore.tables import account, mailbox, message
from policy.decision import Reason
from policy.messages_fr import explain
from smtp_gateway import replies
from smtp_gateway.patient_send import Attachment, PatientMessage, SendRefused
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir

DR_MARTIN = "claire.martin@demo.mssante.fr"
DR_LEFEVRE = "paul.lefevre@demo.mssante.fr"
NURSE = "sophie.bernard@demo.mssante.fr"
CARDIO = "luc.cardio@demo.mssante.fr"  # only the access-log test writes as this one
UNLISTED = "not.listed@demo.mssante.fr"
INS = "279035121518989"
PATIENT = f"{INS}@patient.demo.mssante.fr"
PASSWORD = "trust-rules-pw-1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[PlatformDir, InProcessPlatform]
]:
    url = database_url(request, request.param)
    pdir = make_platform_dir(tmp_path_factory.mktemp("rules"), url)
    for address in (DR_MARTIN, DR_LEFEVRE, NURSE, CARDIO):
        pdir.add_account(address, PASSWORD)
    pdir.add_account(UNLISTED, PASSWORD, referenced=False)
    pdir.add_patient(INS)
    plat = InProcessPlatform(pdir).start()
    yield pdir, plat
    plat.stop()


def smtp_send(pdir: PlatformDir, sender: str, to: str, subject: str, *, fin: bool = False,
              attachment: tuple[str, str, bytes] | None = None) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    if fin:
        msg["X-MSS-MES"] = "FIN"
    msg.set_content("Bonjour, voici le compte rendu.")
    if attachment:
        name, ctype, data = attachment
        main, _, sub = ctype.partition("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(sender, PASSWORD)
        s.send_message(msg)


def patient_account(pdir: PlatformDir) -> accounts.Account:
    ctx = pdir.context()
    try:
        acc = ctx.db.read_sync(lambda c: accounts.get_by_address(c, PATIENT))
    finally:
        ctx.close()
    assert acc is not None
    return acc


def patient_send(plat: InProcessPlatform, pdir: PlatformDir, to: str, subject: str = "Merci",
                 **kw: object) -> object:
    acc = patient_account(pdir)
    assert acc.active
    message = PatientMessage(to=[to], subject=subject, body="Merci docteur", **kw)  # type: ignore[arg-type]
    platform = plat.platform
    assert platform is not None
    return plat.call(lambda: platform.patient_sender.send(acc, message))


def inbox_subjects(pdir: PlatformDir, address: str, folder: str = "INBOX") -> list[str]:
    ctx = pdir.context()
    try:
        def read(conn):
            rows = conn.execute(
                select(account.c.id, message.c.blob_id)
                .select_from(message.join(mailbox).join(account))
                .where(account.c.address == address, mailbox.c.name == folder)
                .order_by(message.c.id)
            ).all()
            return [messages.read_meta(conn, ctx.keystore, r.id, r.blob_id)["headers"].get(
                "subject", "") for r in rows]
        return ctx.db.read_sync(read)
    finally:
        ctx.close()


def test_patient_replies_only_to_who_wrote_first_and_fin_closes(live) -> None:
    pdir, plat = live
    # Before anyone wrote: refused, nothing stored anywhere.
    before = inbox_subjects(pdir, DR_MARTIN)
    refused = patient_send(plat, pdir, DR_MARTIN, "trop tot")
    assert isinstance(refused, SendRefused)
    assert refused.decision.reason is Reason.PATIENT_NOT_CONTACTED
    assert refused.recipient == DR_MARTIN
    assert replies.for_reason(refused.decision.reason) == (
        "550 5.7.1 A patient may only write to a professional who wrote to them first"
    )
    assert "professionnel" in explain(refused.decision.reason, audience="patient").lower()
    assert inbox_subjects(pdir, DR_MARTIN) == before

    smtp_send(pdir, DR_MARTIN, PATIENT, "Vos resultats")
    assert "Vos resultats" in inbox_subjects(pdir, PATIENT)
    ok = patient_send(plat, pdir, DR_MARTIN, "Reponse patiente")
    assert not isinstance(ok, SendRefused), ok
    assert "Reponse patiente" in inbox_subjects(pdir, DR_MARTIN)
    # Not to another professional who never wrote.
    other = patient_send(plat, pdir, DR_LEFEVRE, "pas permis")
    assert isinstance(other, SendRefused) and other.recipient == DR_LEFEVRE
    assert "pas permis" not in inbox_subjects(pdir, DR_LEFEVRE)
    # Never to a patient.
    self_send = patient_send(plat, pdir, PATIENT, "moi")
    assert isinstance(self_send, SendRefused)
    assert self_send.decision.reason is Reason.PATIENT_NOT_CONTACTED

    # X-MSS-MES: FIN closes; a later message reopens.
    smtp_send(pdir, DR_MARTIN, PATIENT, "Fin du suivi", fin=True)
    closed = patient_send(plat, pdir, DR_MARTIN, "apres fin")
    assert isinstance(closed, SendRefused), closed
    smtp_send(pdir, DR_MARTIN, PATIENT, "Nouveau suivi")
    reopened = patient_send(plat, pdir, DR_MARTIN, "apres reouverture")
    assert not isinstance(reopened, SendRefused), reopened

    ctx = pdir.context()
    try:
        perms = ctx.db.read_sync(lambda c: list_permissions(c, INS))
    finally:
        ctx.close()
    writers = {p.professional for p in perms}
    assert DR_MARTIN in writers and DR_LEFEVRE not in writers
    (martin,) = [p for p in perms if p.professional == DR_MARTIN]
    assert martin.closed_at is None and martin.reopened_at is not None


def test_patient_copy_in_sent_and_attachment_checked(live) -> None:
    pdir, plat = live
    smtp_send(pdir, NURSE, PATIENT, "Soins")
    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    bad = patient_send(plat, pdir, NURSE, "piece jointe",
                       attachments=[Attachment("photo.pdf", "application/pdf", exe)])
    assert isinstance(bad, SendRefused)
    assert bad.decision.reason is Reason.ATTACHMENT_TYPE_REFUSED
    good = patient_send(plat, pdir, NURSE, "Merci pour les soins")
    assert not isinstance(good, SendRefused)
    ctx = pdir.context()
    try:
        def sent(conn):
            return conn.execute(
                select(message.c.flags).select_from(message.join(mailbox).join(account))
                .where(account.c.address == PATIENT, mailbox.c.name == "Sent")).scalars().all()
        flags = ctx.db.read_sync(sent)
    finally:
        ctx.close()
    assert "\\Seen" in flags


def test_unreferenced_professional_refused_at_mail(live) -> None:
    pdir, _ = live
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(UNLISTED, PASSWORD)
        code, text = s.docmd("MAIL", f"FROM:<{UNLISTED}>")
        assert (code, text) == (550, b"5.7.1 Sender is not a referenced professional")
        code, _ = s.docmd("RCPT", f"TO:<{DR_MARTIN}>")
        assert code == 503  # no transaction: MAIL was refused


def test_forged_from_header_and_dangerous_attachment_refused(live) -> None:
    pdir, _ = live
    with pytest.raises(smtplib.SMTPDataError) as exc:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = DR_LEFEVRE, DR_MARTIN, "forged"
        msg.set_content("x")
        with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
            s.starttls(context=pdir.client_tls())
            s.login(DR_MARTIN, PASSWORD)
            s.sendmail(DR_MARTIN, [DR_LEFEVRE], msg.as_bytes())
    assert exc.value.smtp_code == 553
    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    with pytest.raises(smtplib.SMTPDataError) as exc2:
        smtp_send(pdir, DR_MARTIN, DR_LEFEVRE, "ordonnance",
                  attachment=("ordonnance.pdf", "application/pdf", exe))
    assert exc2.value.smtp_code == 554
    err = exc2.value.smtp_error
    assert isinstance(err, bytes) and err.startswith(b"5.6.0 Attachment type not accepted: ")
    assert b"ordonnance.pdf" in exc2.value.smtp_error


def test_untrusted_domain_refused(live) -> None:
    pdir, _ = live
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(DR_MARTIN, PASSWORD)
        assert s.docmd("MAIL", f"FROM:<{DR_MARTIN}>")[0] == 250
        code, text = s.docmd("RCPT", "TO:<dr.who@gmail.com>")
        assert (code, text) == (550, b"5.7.1 Domain is outside the trust space")


def test_patient_data_journaled_and_visible_in_the_access_log(live) -> None:
    import imaplib

    from audit.access_log import Resolution, access_log
    from directory import lookup

    pdir, plat = live
    smtp_send(pdir, CARDIO, PATIENT, "Bilan cardiologique")
    assert not isinstance(patient_send(plat, pdir, CARDIO, "Question patiente"), SendRefused)
    imap = imaplib.IMAP4("127.0.0.1", pdir.ports["imap"])
    imap.starttls(pdir.client_tls())
    imap.login(CARDIO, PASSWORD)
    imap.select("INBOX")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK" and any(b"Question patiente" in part[1] for part in data
                               if isinstance(part, tuple))
    imap.logout()

    ctx = pdir.context()
    try:
        def resolve(event):  # the webmail resolves names from the directory at read time
            entry = ctx.db.read_sync(lambda c: lookup.mailbox(c, event.actor))
            return Resolution(name=entry.display_name if entry else event.actor,
                              profession="", title="")

        def journal_ready():
            records = ctx.db.read_sync(lambda c: access_log(
                c, INS, resolve, actions=("patient_data.read", "message.delivered")))
            reads = [r for r in records if r.actor == CARDIO and r.protocol == "imap"]
            return records if reads else None

        records: Any = wait_for(journal_ready, 10, "the read in the journal")
    finally:
        ctx.close()
    delivered = [r for r in records if r.action == "message.delivered"]
    assert delivered, "the delivery to the patient is journaled with the patient's INS"
    reads = [r for r in records if r.action == "patient_data.read"]
    assert any(r.who == CARDIO.split("@")[0] or r.actor == CARDIO for r in reads)


def test_patient_refused_at_smtp_submission(live) -> None:
    """Patients write through the web mail only (issue 7, "Patients"): their valid
    credentials are refused at AUTH, on 587 after STARTTLS and on 465."""
    pdir, _ = live
    expected = (535, b"5.7.8 Patient accounts cannot use SMTP submission: use the web mail")
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(PATIENT, "patient-password-1")
        assert (exc.value.smtp_code, exc.value.smtp_error) == expected
        # Still not authenticated: no transaction can start.
        assert s.docmd("MAIL", f"FROM:<{PATIENT}>") == (530, b"5.7.0 Authentication required")
    with smtplib.SMTP_SSL("127.0.0.1", pdir.ports["submissions"], timeout=30,
                          context=pdir.client_tls()) as s:
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(PATIENT, "patient-password-1")
        assert (exc.value.smtp_code, exc.value.smtp_error) == expected
    # journaled as refused logins, as IMAP and the API journal theirs (never "succeeded")
    rows = _login_entries(pdir, PATIENT, "smtp", 2)  # smtplib tries PLAIN, then LOGIN
    assert {(r["action"], r["outcome"], r["reason"]) for r in rows} == {
        ("login.failed", "refused", "patient_smtp_refused")}


def _login_entries(pdir: PlatformDir, actor: str, protocol: str, count: int) -> list[Any]:
    """The journal's login entries of ``actor`` over ``protocol``, once there are ``count``
    (a patient's messages sent through the web are journaled too: not counted)."""
    ctx = pdir.context()
    try:
        def logins() -> list[Any] | None:
            rows = ctx.db.read_sync(lambda c: list(c.execute(
                select(audit_entry).where(audit_entry.c.actor == actor,
                                          audit_entry.c.protocol == protocol,
                                          audit_entry.c.action.like("login.%"))).mappings()))
            return rows if len(rows) >= count else None

        return wait_for(logins, 10, f"{count} {protocol} login entries of {actor}")  # type: ignore[return-value]
    finally:
        ctx.close()


def test_patient_refused_at_the_directory_api(live) -> None:
    """The directory API serves professionals only: a patient's valid credentials get
    401, journaled as a refused login; a professional's are journaled as succeeded."""
    pdir, plat = live
    port = plat.platform.ports["web"][0]
    with httpx.Client(verify=pdir.client_tls(), base_url=f"https://127.0.0.1:{port}") as web:
        refused = web.get("/api/directory", params={"q": "lefevre"},
                          auth=(PATIENT, "patient-password-1"))
        served = web.get("/api/directory", params={"q": "lefevre"}, auth=(DR_LEFEVRE, PASSWORD))
    assert (refused.status_code, served.status_code) == (401, 200)
    [patient] = _login_entries(pdir, PATIENT, "web", 1)
    assert (patient["action"], patient["outcome"], patient["reason"]) == (
        "login.failed", "refused", "patient_api_refused")
    doctor = _login_entries(pdir, DR_LEFEVRE, "web", 1)
    assert {(r["action"], r["outcome"]) for r in doctor} == {("login.succeeded", "ok")}


def test_patient_cannot_write_to_a_disabled_or_delisted_professional(live) -> None:
    """The send API re-checks routing and the directory when the patient writes: a disabled
    local account is an unknown recipient (never queued to ourselves, even with our own
    domain on the trusted list); a mailbox that left the directory cannot be written to.
    A refused message is in nobody's mailbox, not even the patient's Sent folder."""
    from directory import admin as directory_admin
    from mailstore.policy_trust import add_trusted, remove_trusted
    from smtp_gateway import queue_store

    pdir, plat = live
    gone, left = "gone.doc@demo.mssante.fr", "left.doc@demo.mssante.fr"
    for address in (gone, left):
        pdir.add_account(address, PASSWORD)
        smtp_send(pdir, address, PATIENT, f"Premier message de {address}")
    assert not isinstance(patient_send(plat, pdir, gone, "avant desactivation"), SendRefused)
    assert not isinstance(patient_send(plat, pdir, left, "avant radiation"), SendRefused)

    ctx = pdir.context()
    platform = plat.platform
    assert platform is not None
    gate: Any = platform.services["policy"]
    try:
        ctx.db.write_sync(lambda tx: accounts.set_state(tx.conn, gone, accounts.DISABLED))
        refused = patient_send(plat, pdir, gone, "compte desactive")
        assert isinstance(refused, SendRefused), refused
        assert (refused.decision.reason, refused.recipient) == (Reason.UNKNOWN_RECIPIENT, gone)

        # Our own domain also on the list must not make the address look remote.
        ctx.db.write_sync(lambda tx: add_trusted(tx.conn, "demo.mssante.fr", added_by="test",
                                                 at=datetime.now(UTC)))
        plat.call(gate.reload_trust)
        try:
            again = patient_send(plat, pdir, gone, "compte desactive bis")
            assert isinstance(again, SendRefused), again
            assert again.decision.reason is Reason.UNKNOWN_RECIPIENT
            queued = ctx.db.read_sync(lambda c: queue_store.list_entries(c))
            assert gone not in {e.recipient for e in queued}
        finally:
            ctx.db.write_sync(lambda tx: remove_trusted(tx.conn, "demo.mssante.fr"))
            plat.call(gate.reload_trust)

        ctx.db.write_sync(lambda tx: directory_admin.deactivate(
            tx.conn, left, who=directory_admin.Who("test")))
        delisted = patient_send(plat, pdir, left, "professionnel radie")
    finally:
        ctx.close()
    assert isinstance(delisted, SendRefused), delisted
    assert (delisted.decision.reason, delisted.recipient) == (Reason.PATIENT_NOT_CONTACTED, left)
    assert "no longer a referenced professional" in delisted.decision.detail

    sent = inbox_subjects(pdir, PATIENT, "Sent")
    assert "avant desactivation" in sent and "avant radiation" in sent  # the control
    for subject in ("compte desactive", "compte desactive bis", "professionnel radie"):
        assert subject not in sent
    assert "professionnel radie" not in inbox_subjects(pdir, left)


def test_refused_patient_message_is_not_in_sent(live) -> None:
    pdir, plat = live
    refused = patient_send(plat, pdir, DR_LEFEVRE, "jamais envoye ni garde")
    assert isinstance(refused, SendRefused)
    assert refused.decision.reason is Reason.PATIENT_NOT_CONTACTED
    assert "jamais envoye ni garde" not in inbox_subjects(pdir, PATIENT, "Sent")
    assert "jamais envoye ni garde" not in inbox_subjects(pdir, DR_LEFEVRE)
