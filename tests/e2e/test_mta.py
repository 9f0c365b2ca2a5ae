"""Mail from another operator: a real Postfix relays to our MTA with its client certificate;
DKIM is verified through a real DNS server on loopback. Then the MTA's rules, spoken to
directly with smtplib (STARTTLS, mutual TLS, no AUTH, no relay, patients)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import authres
import pytest
from sqlalchemy import Connection, select

from directory import admin as directory_admin
from mailstore import messages
from mailstore.policy_store import list_permissions
from mailstore.tables import account, mailbox, message
from smtp_gateway.patient_send import PatientMessage
from tests.support.mail_peers import OTHER_DOMAIN, OperatorWorld, build_world
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, database_url

CLAIRE = "claire.martin@demo.mssante.fr"
PASSWORD = "mta-tests-pw-1"
PEER = f"dr.peer@{OTHER_DOMAIN}"
HOSTNAME = "mail.demo.mssante.fr"
INS = "279035121518989"
PATIENT = f"{INS}@patient.demo.mssante.fr"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[OperatorWorld, InProcessPlatform]
]:
    url = database_url(request, request.param)
    w = build_world(tmp_path_factory.mktemp("mta"), url)
    w.pdir.add_account(CLAIRE, PASSWORD)
    w.pdir.add_patient(INS)
    plat = InProcessPlatform(w.pdir).start()
    yield w, plat
    plat.stop()
    w.stop()


def peer_message(subject: str, *, to: str = CLAIRE, sender: str = PEER,
                 extra: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=OTHER_DOMAIN)
    for k, v in (extra or {}).items():
        msg[k] = v
    msg.set_content("Bonjour, voici le compte rendu.")
    return msg


def signed(w: OperatorWorld, msg: EmailMessage) -> bytes:
    return w.peer_signer.sign(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))


def through_postfix(w: OperatorWorld, raw: bytes, to: str = CLAIRE, sender: str = PEER) -> None:
    """Hand a message to the other operator's Postfix, which relays it to our MTA."""
    with smtplib.SMTP("127.0.0.1", w.postfix.smtp_port, timeout=30) as s:
        assert s.sendmail(sender, [to], raw) == {}


def inbox(w: OperatorWorld, address: str) -> list[bytes]:
    ctx = w.pdir.context()
    try:
        def read(conn: Connection) -> list[bytes]:
            rows = conn.execute(
                select(account.c.id, message.c.blob_id)
                .select_from(message.join(mailbox).join(account))
                .where(account.c.address == address, mailbox.c.name == "INBOX")
                .order_by(message.c.uid)
            ).all()
            return [messages.read_body(conn, ctx.keystore, r.id, r.blob_id) for r in rows]

        return ctx.db.read_sync(read)
    finally:
        ctx.close()


def with_marker(w: OperatorWorld, address: str, marker: str) -> list[bytes]:
    return [m for m in inbox(w, address) if marker.encode() in m]


def auth_results(raw: bytes) -> authres.AuthenticationResultsHeader:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    field = next(f for f in head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
                 if f.lower().startswith("authentication-results:"))
    return authres.AuthenticationResultsHeader.parse(field)


# -- with Postfix ----------------------------------------------------------------------------


def test_postfix_relays_a_signed_message_over_mutual_tls(world) -> None:
    w, _ = world
    through_postfix(w, signed(w, peer_message("relayed mta-1")))
    found: Any = wait_for(lambda: with_marker(w, CLAIRE, "mta-1"), 30, "the relayed message")
    (got,) = found
    ar = auth_results(got)
    assert ar.authserv_id == HOSTNAME
    (dkim_result,) = ar.results
    assert (dkim_result.method, dkim_result.result) == ("dkim", "pass")
    assert dkim_result.header_d == OTHER_DOMAIN
    # Our Received field: over TLS from Postfix; Postfix logged the verified session.
    assert b"with ESMTPS" in got
    assert "Verified TLS connection established to localhost" in w.postfix.log_text()
    # Journaled in the delivery's transaction: accepted from the peer, delivered to Claire.
    import json
    from email.parser import BytesHeaderParser

    from audit.tables import audit_entry

    mid = str(BytesHeaderParser().parsebytes(got)["Message-ID"]).strip()
    ctx = w.pdir.context()
    try:
        rows = ctx.db.read_sync(lambda c: [dict(r) for r in c.execute(
            select(audit_entry).where(audit_entry.c.message_id == mid)
            .order_by(audit_entry.c.seq)).mappings()])
    finally:
        ctx.close()
    assert [(r["action"], r["actor"], r["protocol"], r["outcome"]) for r in rows] == [
        ("message.accepted", PEER, "mta", "ok"), ("message.delivered", PEER, "mta", "ok")]
    assert {r["client_ip"] for r in rows} == {"127.0.0.1"}
    assert json.loads(rows[1]["object_ids"]) == [["recipient", CLAIRE]]
    assert "relayed mta-1" not in repr(rows)


def refusals(w: OperatorWorld) -> int:
    return w.postfix.log_text().count("5.7.20 No passing DKIM signature found")


def test_unsigned_message_is_refused_5_7_20(world) -> None:
    w, _ = world
    before = refusals(w)
    msg = peer_message("unsigned mta-2")
    through_postfix(w, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    wait_for(lambda: refusals(w) > before, 30, "Postfix to log our refusal")
    assert not with_marker(w, CLAIRE, "mta-2")


def test_tampered_signature_is_refused(world) -> None:
    w, _ = world
    before = refusals(w)
    raw = signed(w, peer_message("tampered mta-3")).replace(b"compte rendu", b"compte rendu!")
    through_postfix(w, raw)
    wait_for(lambda: refusals(w) > before, 30, "Postfix to log our refusal")
    assert not with_marker(w, CLAIRE, "mta-3")


def test_referenced_peer_writes_to_a_patient_who_replies_through_the_queue(world) -> None:
    w, plat = world
    ctx = w.pdir.context()
    try:
        ctx.db.write_sync(lambda tx: directory_admin.add_mailbox(
            tx.conn, address=PEER, mailbox_type="PER", national_id="810000000003",
            last_name="Peer", profession="10", who=directory_admin.Who("test")))
    finally:
        ctx.close()
    through_postfix(w, signed(w, peer_message("patient mta-4", to=PATIENT)), to=PATIENT)
    wait_for(lambda: with_marker(w, PATIENT, "mta-4"), 30, "the patient's copy")
    ctx = w.pdir.context()
    try:
        perms = ctx.db.read_sync(lambda c: list_permissions(c, INS))
        from mailstore.accounts import get_by_address

        patient = ctx.db.read_sync(lambda c: get_by_address(c, PATIENT))
    finally:
        ctx.close()
    assert PEER in {p.professional for p in perms}
    # The patient answers from the web mail: queued, then delivered to Postfix's Maildir.
    sender = plat.platform.patient_sender
    result = plat.call(lambda: sender.send(patient, PatientMessage(
        to=[PEER], subject="Reponse mta-4", body="Merci docteur.")))
    assert not hasattr(result, "decision"), result
    wait_for(lambda: [m for m in w.postfix.delivered("dr.peer") if b"Reponse mta-4" in m], 30,
             "the patient's reply at the other operator")
    # The journal: the peer's message delivered to the patient (with the INS), the reply
    # sent from the web and handed over to the other operator.
    from audit.tables import audit_entry

    def journal(mid: str) -> list[tuple[str, str | None, str | None]]:
        def read(c: Connection) -> list[tuple[str, str | None, str | None]]:
            return [(r[0], r[1], r[2]) for r in c.execute(
                select(audit_entry.c.action, audit_entry.c.patient_ins, audit_entry.c.protocol)
                .where(audit_entry.c.message_id == mid).order_by(audit_entry.c.seq))]

        c2 = w.pdir.context()
        try:
            found: list[tuple[str, str | None, str | None]] = c2.db.read_sync(read)
        finally:
            c2.close()
        return found

    incoming = with_marker(w, PATIENT, "mta-4")[0]
    from email.parser import BytesHeaderParser

    in_mid = str(BytesHeaderParser().parsebytes(incoming)["Message-ID"]).strip()
    assert journal(in_mid) == [("message.accepted", None, "mta"),
                               ("message.delivered", INS, "mta")]

    def relayed() -> list[tuple[str, str | None, str | None]] | None:
        entries = journal(result.message_id)
        return entries if any(a == "message.relayed" for a, _, _ in entries) else None

    out: Any = wait_for(relayed, 30, "the relay of the patient's reply in the journal")
    assert out[0] == ("webmail.send", INS, "web")
    assert out[-1] == ("message.relayed", None, "smtp")  # after any deferral


# -- the rules, with smtplib -------------------------------------------------------------------


def client_context(w: OperatorWorld, names: list[str] | None) -> ssl.SSLContext:
    return w.pdir.operator_tls(names) if names else w.pdir.client_tls()


def mta(w: OperatorWorld, names: list[str] | None = None, *, tls: bool = True) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", w.pdir.ports["mta"], timeout=30)
    s.ehlo(f"mx.{OTHER_DOMAIN}")
    if tls:
        s.starttls(context=client_context(w, names))
        s.ehlo(f"mx.{OTHER_DOMAIN}")
    return s


def test_starttls_required_and_no_auth(world) -> None:
    w, _ = world
    with mta(w, tls=False) as s:
        assert s.has_extn("starttls") and not s.has_extn("auth")
        assert s.docmd("MAIL", f"FROM:<{PEER}>") == (
            530, b"5.7.0 Must issue a STARTTLS command first")
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN AGFAYg==")[0] == 502


def test_client_certificate_required_and_trusted(world) -> None:
    w, _ = world
    with mta(w, None) as s:  # no client certificate
        assert s.docmd("MAIL", f"FROM:<{PEER}>") == (
            550, b"5.7.1 Domain is outside the trust space")
    with mta(w, ["mx.untrusted.example"]) as s:  # verified, but outside the trust space
        assert s.docmd("MAIL", f"FROM:<{PEER}>")[0] == 550


def test_sender_domain_and_recipients(world) -> None:
    w, _ = world
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        assert s.docmd("MAIL", "FROM:<x@untrusted.example>") == (
            550, b"5.7.1 Domain is outside the trust space")
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 553  # our own domain, from outside
        assert s.docmd("MAIL", f"FROM:<{PEER}>")[0] == 250
        assert s.docmd("RCPT", "TO:<nobody@demo.mssante.fr>") == (550, b"5.1.1 No such mailbox")
        assert s.docmd("RCPT", f"TO:<someone@{OTHER_DOMAIN}>") == (
            554, b"5.7.1 Relay access denied")
        assert s.docmd("RCPT", "TO:<x@gmail.com>") == (554, b"5.7.1 Relay access denied")
        assert s.docmd("RCPT", f"TO:<{CLAIRE}>") == (250, b"2.1.5 Recipient OK")


def test_unreferenced_sender_cannot_write_to_a_patient(world) -> None:
    w, _ = world
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        assert s.docmd("MAIL", f"FROM:<unknown.doc@{OTHER_DOMAIN}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{PATIENT}>") == (
            550, b"5.7.1 Sender is not a referenced professional")


def test_direct_signed_message_and_forged_authentication_results(world) -> None:
    w, _ = world
    msg = peer_message("direct mta-5", extra={
        "Authentication-Results": f"{HOSTNAME}; dkim=pass header.d=demo.mssante.fr"})
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        assert s.sendmail(PEER, [CLAIRE], signed(w, msg)) == {}
    (got,) = with_marker(w, CLAIRE, "mta-5")
    fields = [line for line in got.split(b"\r\n\r\n")[0].split(b"\r\n")
              if line.lower().startswith(b"authentication-results:")]
    assert len(fields) == 1  # the forged one (our authserv-id) was removed (RFC 8601 §5)
    assert auth_results(got).results[0].result == "pass"


# -- From:/Sender: at DATA, DKIM aligned with From: (issue 7, "Domains") ----------------------

THIRD_DOMAIN = "third-operator.test"  # trusted, but its mail is not signed by the peer


def data_reply(w: OperatorWorld, raw: bytes, *, to: str = CLAIRE) -> tuple[int, bytes]:
    """Send ``raw`` from PEER over mutual TLS; the DATA reply (250 when accepted)."""
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        try:
            s.sendmail(PEER, [to], raw)
        except smtplib.SMTPDataError as exc:
            err = exc.smtp_error
            return exc.smtp_code, err if isinstance(err, bytes) else err.encode()
    return 250, b""


def test_from_header_must_be_trusted_not_ours_and_dkim_aligned(world) -> None:

    w, plat = world
    not_owned = (553, b"5.7.1 Sender address not owned by authenticated user")
    untrusted = (550, b"5.7.1 Domain is outside the trust space")
    # Envelope and signature of the peer, From: one of our own users: a spoof, refused.
    assert data_reply(w, signed(w, peer_message("from-ours mta-6", sender=CLAIRE))) == not_owned
    assert data_reply(w, signed(w, peer_message(
        "sender-ours mta-6", extra={"Sender": f"secretariat@{HOSTNAME.split('.', 1)[1]}"}
    ))) == not_owned
    assert data_reply(w, signed(w, peer_message(
        "from-gmail mta-6", sender="dr.who@gmail.com"))) == untrusted
    no_from = (f"To: {CLAIRE}\r\nSubject: no-from mta-6\r\n\r\nx\r\n").encode()
    assert data_reply(w, w.peer_signer.sign(no_from)) == untrusted

    # From: another trusted operator, signed only by the envelope's operator: not aligned.
    w.pdir.trust(THIRD_DOMAIN)
    platform = plat.platform
    assert platform is not None
    gate: Any = platform.services["policy"]
    plat.call(gate.reload_trust)
    assert data_reply(w, signed(w, peer_message(
        "from-third mta-6", sender=f"dr.tiers@{THIRD_DOMAIN}"
    ))) == (550, b"5.7.20 No passing DKIM signature found (RFC 7372)")

    assert not with_marker(w, CLAIRE, "mta-6")
    # The control: the peer's own From:, aligned with its signature, is accepted.
    assert data_reply(w, signed(w, peer_message("aligned mta-6b"))) == (250, b"")
    assert with_marker(w, CLAIRE, "mta-6b")


def test_null_sender_grants_nothing_to_a_patient(world) -> None:
    """A bounce (MAIL FROM:<>, RFC 5321 §4.5.5) names no professional: it cannot open a
    conversation, so it is refused for a patient like any unreferenced sender."""
    w, _ = world
    with mta(w, [f"mx.{OTHER_DOMAIN}"]) as s:
        assert s.docmd("MAIL", "FROM:<>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{PATIENT}>") == (
            550, b"5.7.1 Sender is not a referenced professional")
        assert s.docmd("RCPT", f"TO:<{CLAIRE}>")[0] == 250  # a professional receives bounces


def test_fin_through_the_mta_closes_the_permission(world) -> None:
    """X-MSS-MES: FIN from another operator's professional, relayed by Postfix, closes the
    conversation the professional's first message opened (DOMAIN.md §5)."""
    from mailstore.accounts import get_by_address
    from policy.decision import Reason
    from smtp_gateway.patient_send import SendRefused
    from tests.support.platform import new_national_id

    w, plat = world
    doc = f"someone@{OTHER_DOMAIN}"  # a mailbox of Postfix's: the patient's reply lands there
    ctx = w.pdir.context()
    try:
        ctx.db.write_sync(lambda tx: directory_admin.add_mailbox(
            tx.conn, address=doc, mailbox_type="PER", national_id=new_national_id(),
            last_name="Someone", profession="60", who=directory_admin.Who("test")))
        patient = ctx.db.read_sync(lambda c: get_by_address(c, PATIENT))
    finally:
        ctx.close()
    assert patient is not None

    def permission() -> Any:
        ctx = w.pdir.context()
        try:
            perms = ctx.db.read_sync(lambda c: list_permissions(c, INS))
        finally:
            ctx.close()
        return next((p for p in perms if p.professional == doc), None)

    def reply(subject: str) -> object:
        platform = plat.platform
        assert platform is not None
        sender = platform.patient_sender
        return plat.call(lambda: sender.send(patient, PatientMessage(
            to=[doc], subject=subject, body="Merci docteur.")))

    through_postfix(w, signed(w, peer_message("suivi mta-7", to=PATIENT, sender=doc)),
                    to=PATIENT, sender=doc)
    opened: Any = wait_for(lambda: (p := permission()) is not None and p.is_open and p, 30,
                           "the permission opened through the MTA")
    answer = reply("Reponse mta-7")
    assert not isinstance(answer, SendRefused), answer
    wait_for(lambda: [m for m in w.postfix.delivered("someone") if b"Reponse mta-7" in m], 30,
             "the patient's reply at the other operator")

    through_postfix(w, signed(w, peer_message("fin mta-7", to=PATIENT, sender=doc,
                                              extra={"X-MSS-MES": "FIN"})),
                    to=PATIENT, sender=doc)
    closed: Any = wait_for(lambda: (p := permission()) is not None and p.closed_at and p, 30,
                           "X-MSS-MES: FIN to close the permission")
    assert closed.first_message_id == opened.first_message_id
    assert closed.last_message_at > opened.last_message_at
    refused = reply("apres fin mta-7")
    assert isinstance(refused, SendRefused), refused
    assert (refused.decision.reason, refused.recipient) == (Reason.PATIENT_NOT_CONTACTED, doc)
    assert "closed" in refused.decision.detail
    assert with_marker(w, PATIENT, "fin mta-7")  # the closing message itself is delivered
