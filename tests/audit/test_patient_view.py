"""The patient's side of the journal on the live platform (both backends): a send through
the patient API is journaled as ``webmail.send``, and the access history names who read
what — name and profession from the directory, the message's subject decrypted at read
time (webmail.access_view), none of which is stored in the journal."""

from __future__ import annotations

import imaplib
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audit.tables import audit_entry
from caducee.cli import main
from mailstore import accounts
from smtp_gateway.patient_send import PatientMessage, SendRefused
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir
from webmail.access_view import patient_access_log

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "conf" / "demo"
DR_MARTIN = "claire.martin@demo.mssante.fr"  # in the demo directory: PER, Médecin
NURSE = "sophie.bernard@demo.mssante.fr"  # in the demo directory: PER, Infirmier
INS = "279035121518989"
PATIENT = f"{INS}@patient.demo.mssante.fr"
PASSWORD = "patient-view-pw-1"
TO_PATIENT = "Résultats de biologie"
FROM_PATIENT = "Question sur mes résultats"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[PlatformDir, InProcessPlatform]
]:
    url = database_url(request, request.param)
    pdir = make_platform_dir(tmp_path_factory.mktemp("patient-view"), url)
    tmp = tmp_path_factory.mktemp("report")
    assert main(["-c", str(pdir.config_path), "directory", "import",
                 str(DEMO / "PS_LibreAcces_Personne_activite_demo.txt"),
                 str(DEMO / "Extraction_Correspondance_MSSante_demo.txt"),
                 "--report", str(tmp / "report.txt")]) == 0
    pdir.add_account(DR_MARTIN, PASSWORD, referenced=False, rpps="819999900012")
    pdir.add_account(NURSE, PASSWORD, referenced=False, rpps="819999900038")
    pdir.add_patient(INS)
    plat = InProcessPlatform(pdir).start()
    yield pdir, plat
    plat.stop()


def _smtp_send(pdir: PlatformDir, sender: str, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("Bonjour, voici vos résultats.", cte="quoted-printable")
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(sender, PASSWORD)
        s.send_message(msg)


def _patient_send(pdir: PlatformDir, plat: InProcessPlatform, to: str, subject: str) -> Any:
    ctx = pdir.context()
    try:
        acc = ctx.db.read_sync(lambda c: accounts.get_by_address(c, PATIENT))
    finally:
        ctx.close()
    assert acc is not None
    platform = plat.platform
    assert platform is not None
    msg = PatientMessage(to=[to], subject=subject, body="Bonjour docteur, une question.")
    return plat.call(lambda: platform.patient_sender.send(acc, msg, client_ip="198.51.100.23"))


def _imap_read_all(pdir: PlatformDir, who: str, what: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", pdir.ports["imap"])
    imap.starttls(pdir.client_tls())
    imap.login(who, PASSWORD)
    imap.select("INBOX")
    typ, _ = imap.fetch("1:*", f"({what})")
    assert typ == "OK"
    imap.logout()


def test_patient_send_is_journaled_as_webmail_send(live) -> None:
    pdir, plat = live
    _smtp_send(pdir, NURSE, PATIENT, "Pansement")  # the nurse writes first
    sent = _patient_send(pdir, plat, NURSE, "Merci pour le pansement")
    assert not isinstance(sent, SendRefused)
    ctx = pdir.context()
    try:
        rows = ctx.db.read_sync(lambda c: [dict(r) for r in c.execute(
            select(audit_entry).where(audit_entry.c.message_id == sent.message_id)
            .order_by(audit_entry.c.seq)).mappings()])
    finally:
        ctx.close()
    assert [r["action"] for r in rows] == ["webmail.send", "message.delivered"]
    send = rows[0]
    assert (send["actor"], send["outcome"], send["protocol"], send["patient_ins"],
            send["client_ip"]) == (PATIENT, "ok", "web", INS, "198.51.100.23")
    assert json.loads(rows[1]["object_ids"]) == [["recipient", NURSE]]
    assert "pansement" not in repr(rows).lower()


def test_access_log_names_who_read_what(live) -> None:
    pdir, plat = live
    _smtp_send(pdir, DR_MARTIN, PATIENT, TO_PATIENT)
    assert not isinstance(_patient_send(pdir, plat, DR_MARTIN, FROM_PATIENT), SendRefused)
    _imap_read_all(pdir, DR_MARTIN, "BODY.PEEK[]")

    ctx = pdir.context()
    try:
        def history() -> Any:
            records = ctx.db.read_sync(lambda c: patient_access_log(
                c, ctx.keystore, INS, actions=("patient_data.read", "message.delivered")))
            reads = [r for r in records if r.action == "patient_data.read"
                     and r.actor == DR_MARTIN]
            return records if reads else None

        records: Any = wait_for(history, 10, "Dr Martin's read in the journal")
        stored = ctx.db.read_sync(lambda c: repr(list(c.execute(select(audit_entry)))))
    finally:
        ctx.close()
    reads = [r for r in records if r.action == "patient_data.read" and r.actor == DR_MARTIN]
    assert {(r.label, r.who, r.profession, r.what, r.protocol) for r in reads} == {
        ("a consulté", "Docteur Claire MARTIN", "Médecin", FROM_PATIENT, "imap")}
    delivered = [r for r in records if r.action == "message.delivered"
                 and r.actor == DR_MARTIN]
    assert [(r.label, r.who, r.profession, r.what) for r in delivered] == [
        ("vous a adressé", "Docteur Claire MARTIN", "Médecin", TO_PATIENT)]
    # resolved now, never stored
    for text in (TO_PATIENT, FROM_PATIENT, "Docteur Claire MARTIN", "Médecin"):
        assert text not in stored


def test_title_survives_the_readers_expunge(live) -> None:
    """The reader's copy is gone: the title comes from the patient's own copy."""
    pdir, plat = live
    subject = "Rendez-vous de contrôle"
    _smtp_send(pdir, NURSE, PATIENT, "Soins")
    assert not isinstance(_patient_send(pdir, plat, NURSE, subject), SendRefused)
    _imap_read_all(pdir, NURSE, "BODY.PEEK[]")
    imap = imaplib.IMAP4("127.0.0.1", pdir.ports["imap"])
    imap.starttls(pdir.client_tls())
    imap.login(NURSE, PASSWORD)
    imap.select("INBOX")
    assert imap.store("1:*", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert imap.expunge()[0] == "OK"
    imap.logout()
    ctx = pdir.context()
    try:
        def history() -> Any:
            records = ctx.db.read_sync(lambda c: patient_access_log(c, ctx.keystore, INS))
            found = [r for r in records if r.actor == NURSE and r.what == subject]
            return found or None

        found: Any = wait_for(history, 10, "the nurse's read with its title")
    finally:
        ctx.close()
    assert found[0].who == "Madame Sophie BERNARD" and found[0].profession == "Infirmier"
