"""SMTP submission over real sockets: smtplib, swaks and openssl against the live service."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailstore import messages
from mailstore.tables import account, mailbox, message
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
VICTIM = "rate.limited@demo.mssante.fr"
ANNE = "anne.durand@demo.mssante.fr"
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[PlatformDir, InProcessPlatform]
]:
    url = database_url(request, request.param)
    pdir = make_platform_dir(tmp_path_factory.mktemp("platform"), url)
    for address in (CLAIRE, PAUL, VICTIM, ANNE):
        pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(pdir).start()
    yield pdir, plat
    plat.stop()



def connect(pdir: PlatformDir, *, source: str = "127.0.0.1") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30,
                     source_address=(source, 0))
    s.ehlo("client.test")
    return s


def login(pdir: PlatformDir, user: str = CLAIRE) -> smtplib.SMTP:
    s = connect(pdir)
    s.starttls(context=pdir.client_tls())
    s.ehlo("client.test")
    s.login(user, PASSWORD)
    return s


def make_message(subject: str, body: str, sender: str = CLAIRE, to: str = PAUL) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def stored_bodies(pdir: PlatformDir, address: str) -> list[bytes]:
    ctx = pdir.context()
    try:
        def read(conn):
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


def raw_dialogue(pdir: PlatformDir, lines: list[bytes], *, tls: bool = True) -> bytes:
    """Speak raw SMTP over implicit TLS (port 465), return everything the server said."""
    sock = socket.create_connection(("127.0.0.1", pdir.ports["submissions"]), timeout=15)
    conn = pdir.client_tls().wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock
    out = b""
    try:
        conn.sendall(b"".join(lines))
        conn.settimeout(5)
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if b"221 " in out:
                break
    finally:
        conn.close()
    return out


def auth_line(user: str = CLAIRE) -> bytes:
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    return f"AUTH PLAIN {token}\r\n".encode()


# -- the happy paths ---------------------------------------------------------------------


def test_smtplib_starttls_submission_is_stored_encrypted_and_byte_exact(live) -> None:
    pdir, _ = live
    raw = make_message("Compte rendu Dupont 4471", "Tension 12/8, suivi dans 3 mois 4471")
    before = len(stored_bodies(pdir, PAUL))
    with login(pdir) as s:
        refused = s.sendmail(CLAIRE, [PAUL], raw)
        assert refused == {}
    bodies = stored_bodies(pdir, PAUL)
    assert len(bodies) == before + 1
    stored = bodies[-1]
    # What the client sent, plus our trace fields above it (DKIM-Signature, Received).
    assert stored.endswith(raw)
    prefix = stored[: -len(raw)]
    assert prefix.startswith(b"DKIM-Signature:")
    assert b"\r\nReceived: from client.test" in prefix
    assert b"with ESMTPSA" in prefix


def test_message_id_added_when_missing(live) -> None:
    pdir, _ = live
    raw = b"From: " + CLAIRE.encode() + b"\r\nTo: " + PAUL.encode() + b"\r\nSubject: no id\r\n\r\nx\r\n"
    with login(pdir) as s:
        s.sendmail(CLAIRE, [PAUL], raw)
    stored = stored_bodies(pdir, PAUL)[-1]
    assert b"\r\nMessage-ID: <" in stored


def test_implicit_tls_465(live) -> None:
    pdir, _ = live
    with smtplib.SMTP_SSL("127.0.0.1", pdir.ports["submissions"], context=pdir.client_tls(),
                          timeout=30) as s:
        s.ehlo("client.test")
        assert "auth" in s.esmtp_features
        assert "starttls" not in s.esmtp_features
        s.login(CLAIRE, PASSWORD)
        assert s.sendmail(CLAIRE, [PAUL], make_message("via 465", "ok")) == {}


def test_ehlo_advertises_extensions_and_no_auth_before_tls(live) -> None:
    pdir, _ = live
    with connect(pdir) as s:
        feats = s.esmtp_features
        for name in ("size", "8bitmime", "smtputf8", "enhancedstatuscodes", "pipelining",
                     "starttls"):
            assert name in feats, name
        assert "auth" not in feats
        code, text = s.docmd("AUTH", "PLAIN AGZvbwBiYXI=")
        assert code == 530 and text.startswith(b"5.7.0")
        code, text = s.docmd("MAIL", f"FROM:<{CLAIRE}>")
        assert (code, text[:5]) == (530, b"5.7.0")
        s.starttls(context=pdir.client_tls())
        s.ehlo("client.test")
        assert s.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]


def test_swaks_starttls_and_implicit_tls(live, tmp_path: Path) -> None:
    pdir, _ = live
    before = len(stored_bodies(pdir, PAUL))
    common = ["swaks", "--server", "127.0.0.1", "--auth", "LOGIN", "--auth-user", CLAIRE,
              "--auth-password", PASSWORD, "--from", CLAIRE, "--to", PAUL,
              "--tls-verify", "--tls-ca-path", str(pdir.ca), "--h-Subject", "swaks test"]
    r1 = subprocess.run([*common, "--port", str(pdir.ports["submission"]), "--tls"],
                        capture_output=True, text=True, timeout=60)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    assert "250 2.0.0 OK queued as" in r1.stdout
    r2 = subprocess.run([*common, "--port", str(pdir.ports["submissions"]), "--tlsc"],
                        capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert len(stored_bodies(pdir, PAUL)) == before + 2


def test_two_local_recipients_in_one_transaction(live) -> None:
    """ARCHITECTURE.md §2 flow 1: one DATA, every local recipient's INBOX, one commit before
    the 250; a DATA that policy refuses leaves nothing in either."""
    pdir, _ = live
    raw = make_message("Deux destinataires 8812", "Copie pour Paul et Anne 8812", to=PAUL)
    before = {a: len(stored_bodies(pdir, a)) for a in (PAUL, ANNE)}
    with login(pdir) as s:
        assert s.mail(CLAIRE)[0] == 250
        assert s.rcpt(PAUL)[0] == 250
        assert s.rcpt(ANNE)[0] == 250
        code, text = s.data(raw)
    assert code == 250, text
    queue_id = text.decode().rsplit(" ", 1)[1]
    copies = {}
    for address in (PAUL, ANNE):
        bodies = stored_bodies(pdir, address)
        assert len(bodies) == before[address] + 1, address
        copies[address] = bodies[-1]
    # The same accepted message (one queue id, one signature, one Received) in both.
    assert copies[PAUL] == copies[ANNE]
    assert copies[PAUL].endswith(raw)
    assert f" id {queue_id}".encode() in copies[PAUL]

    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CLAIRE, f"{PAUL}, {ANNE}", "Refuse 8813"
    msg.set_content("Ordonnance jointe 8813")
    msg.add_attachment(exe, maintype="application", subtype="pdf", filename="ordonnance.pdf")
    with login(pdir) as s, pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail(CLAIRE, [PAUL, ANNE], msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    assert exc.value.smtp_code == 554
    for address in (PAUL, ANNE):
        bodies = stored_bodies(pdir, address)
        assert len(bodies) == before[address] + 1, address
        assert not any(b"8813" in b for b in bodies)


# -- refusals ----------------------------------------------------------------------------


def test_wrong_password_535(live) -> None:
    pdir, _ = live
    with connect(pdir) as s:
        s.starttls(context=pdir.client_tls())
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(PAUL, "not the password")
        assert exc.value.smtp_code == 535
        err = exc.value.smtp_error
        assert isinstance(err, bytes) and err.startswith(b"5.7.8")


def test_disabled_account_refused(live) -> None:
    """`caducee account disable`: the right password is refused at once with 535 5.7.8 (the
    login cache is keyed by the credentials version, which disabling bumps)."""
    from mailstore import accounts as accts

    pdir, _ = live
    doc = "bientot.parti@demo.mssante.fr"
    pdir.add_account(doc, PASSWORD)
    with login(pdir, doc) as s:  # works, and fills the login cache
        assert s.docmd("MAIL", f"FROM:<{doc}>")[0] == 250
    ctx = pdir.context()
    try:
        ctx.db.write_sync(lambda tx: accts.set_state(tx.conn, doc, accts.DISABLED))
    finally:
        ctx.close()
    with connect(pdir) as s:
        s.starttls(context=pdir.client_tls())
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(doc, PASSWORD)
        assert (exc.value.smtp_code, exc.value.smtp_error) == (
            535, b"5.7.8 Authentication credentials invalid")
        assert s.docmd("MAIL", f"FROM:<{doc}>") == (530, b"5.7.0 Authentication required")


def test_ten_failures_in_a_minute_get_421(live) -> None:
    pdir, _ = live
    codes = []
    for _ in range(11):
        s = smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30,
                         source_address=("127.0.0.77", 0))
        s.ehlo("x")
        s.starttls(context=pdir.client_tls())
        s.ehlo("x")
        code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0{VICTIM}\0wrong".encode()).decode())
        codes.append((code, text[:5]))
        s.close()
    assert codes[:10] == [(535, b"5.7.8")] * 10
    assert codes[10] == (421, b"4.7.0")
    # Even the right password is refused while locked out.
    s = smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30,
                     source_address=("127.0.0.77", 0))
    s.ehlo("x")
    s.starttls(context=pdir.client_tls())
    s.ehlo("x")
    with pytest.raises((smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected,
                        smtplib.SMTPResponseException)) as exc:
        s.login(VICTIM, PASSWORD)
    assert getattr(exc.value, "smtp_code", 421) == 421


def test_mail_from_must_be_owned(live) -> None:
    pdir, _ = live
    with login(pdir) as s:
        code, text = s.docmd("MAIL", f"FROM:<{PAUL}>")
        assert code == 553
        assert text == b"5.7.1 Sender address not owned by authenticated user"


def test_unknown_local_recipient_and_remote_relay(live) -> None:
    pdir, _ = live
    with login(pdir) as s:
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250
        code, text = s.docmd("RCPT", "TO:<nobody@demo.mssante.fr>")
        assert (code, text) == (550, b"5.1.1 No such mailbox")
        code, text = s.docmd("RCPT", "TO:<someone@example.org>")
        assert (code, text) == (550, b"5.7.1 Domain is outside the trust space")


def test_trusted_remote_domain_is_accepted_and_queued(live) -> None:
    pdir, plat = live
    pdir.trust("autre-operateur.mssante.fr")
    plat.call(plat.platform.services["policy"].reload_trust)
    with login(pdir) as s:
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250
        code, text = s.docmd("RCPT", "TO:<dr.x@autre-operateur.mssante.fr>")
        assert (code, text) == (250, b"2.1.5 Recipient OK")
        s.rset()
        # Accepted and queued for the other operator (tests/e2e/test_outbound.py follows
        # such a message to a real Postfix).
        refused = s.sendmail(CLAIRE, ["dr.x@autre-operateur.mssante.fr"],
                             make_message("autre operateur", "x",
                                          to="dr.x@autre-operateur.mssante.fr"))
        assert refused == {}


def test_tls_1_1_refused_by_openssl(live) -> None:
    pdir, _ = live
    # SECLEVEL=0 so that the client really offers TLS 1.1: the refusal must be the server's.
    for args in (["-connect", f"127.0.0.1:{pdir.ports['submissions']}"],
                 ["-connect", f"127.0.0.1:{pdir.ports['submission']}", "-starttls", "smtp"]):
        r = subprocess.run(["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                            *args], input=b"QUIT\r\n", capture_output=True, timeout=30)
        out = r.stdout + r.stderr
        assert b"Cipher is (NONE)" in out, out.decode(errors="replace")
    ok = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect",
                         f"127.0.0.1:{pdir.ports['submissions']}"], input=b"QUIT\r\n",
                        capture_output=True, timeout=30)
    assert b"Cipher is ECDHE-RSA-AES256-GCM-SHA384" in ok.stdout, ok.stdout


# -- bad input: the right reply, and the session survives -----------------------------------


def test_line_too_long_then_session_survives(live) -> None:
    pdir, _ = live
    with login(pdir) as s:
        code, text = s.docmd("NOOP", "x" * 1200)
        assert code == 500 and text.startswith(b"5.5.2 Command line too long")
        assert s.noop()[0] == 250
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{PAUL}>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\n.\r\n")
        code, text = s.getreply()
        assert code == 500 and text.startswith(b"5.6.0 Line too long")
        assert s.noop()[0] == 250


def test_message_over_size(live) -> None:
    pdir, _ = live
    limit = pdir.config.policy.max_message_size
    with login(pdir) as s:
        code, text = s.docmd("MAIL", f"FROM:<{CLAIRE}> SIZE={limit + 1}")
        assert (code, text[:5]) == (552, b"5.3.4")
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{PAUL}>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        chunk = (b"z" * 998 + b"\r\n") * 1024
        s.send(b"Subject: big\r\n\r\n")
        for _ in range(limit // len(chunk) + 2):
            s.send(chunk)
        s.send(b".\r\n")
        code, text = s.getreply()
        assert (code, text) == (552, b"5.3.4 Message size exceeds limit")
        assert s.noop()[0] == 250


def test_8bit_without_8bitmime_nul_and_bare_lf(live) -> None:
    pdir, _ = live
    cases = [
        (b"Subject: accents\r\n\r\nCaf\xc3\xa9\r\n", b"", 554),
        (b"Subject: accents ok\r\n\r\nCaf\xc3\xa9\r\n", b" BODY=8BITMIME", 250),
        (b"Subject: nul\r\n\r\na\x00b\r\n", b" BODY=8BITMIME", 554),
        (b"Subject: bare cr\r\n\r\nline\rother\r\n", b"", 554),
        (b"Subject: bare lf\r\n\r\nline\nother\r\n", b"", 250),
    ]
    with login(pdir) as s:
        for content, option, expected in cases:
            assert s.docmd("MAIL", f"FROM:<{CLAIRE}>{option.decode()}")[0] == 250
            assert s.docmd("RCPT", f"TO:<{PAUL}>")[0] == 250
            assert s.docmd("DATA")[0] == 354
            s.send(b"From: " + CLAIRE.encode() + b"\r\n" + content + b".\r\n")
            code, text = s.getreply()
            assert code == expected, (content, text)
            if code == 554:
                assert text.startswith(b"5.6.0")
    assert stored_bodies(pdir, PAUL)[-1].endswith(b"Subject: bare lf\r\n\r\nline\r\nother\r\n")


@pytest.mark.parametrize("marker", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"])
def test_smtp_smuggling_never_ends_data(live, marker: bytes) -> None:
    pdir, _ = live
    before = len(stored_bodies(pdir, PAUL))
    smuggled = (
        b"MAIL FROM:<" + CLAIRE.encode() + b">\r\nRCPT TO:<" + PAUL.encode() + b">\r\nDATA\r\n"
        b"Subject: SMUGGLED\r\n\r\nevil\r\n.\r\n"
    )
    out = raw_dialogue(pdir, [
        b"EHLO client.test\r\n", auth_line(),
        b"MAIL FROM:<" + CLAIRE.encode() + b">\r\n",
        b"RCPT TO:<" + PAUL.encode() + b">\r\n", b"DATA\r\n",
        b"Subject: innocent\r\n\r\nhello" + marker + smuggled + b"QUIT\r\n",
    ])
    # The first DATA never ended at the fake marker: no second transaction happened.
    assert out.count(b"354 ") == 1, out
    after = stored_bodies(pdir, PAUL)
    assert not any(b"SMUGGLED" in b and b"innocent" not in b for b in after[before:])


def test_pipelined_commands_out_of_order(live) -> None:
    pdir, _ = live
    out = raw_dialogue(pdir, [
        b"EHLO client.test\r\n", auth_line(),
        b"RCPT TO:<" + PAUL.encode() + b">\r\n",  # before MAIL
        b"DATA\r\n",  # before RCPT
        b"MAIL FROM:<" + CLAIRE.encode() + b">\r\n",
        b"MAIL FROM:<" + CLAIRE.encode() + b">\r\n",  # nested
        b"RCPT TO:<" + PAUL.encode() + b">\r\n",
        b"NOOP\r\n", b"QUIT\r\n",
    ])
    lines = [ln for ln in out.split(b"\r\n") if ln and not ln.startswith(b"250-")]
    codes = [ln[:3] for ln in lines]
    # greeting, EHLO, AUTH, RCPT→503, DATA→503, MAIL→250, MAIL→503, RCPT→250, NOOP→250, QUIT
    assert codes == [b"220", b"250", b"235", b"503", b"503", b"250", b"503", b"250", b"250",
                     b"221"], out
    assert all(ln[4:9] == b"5.5.1" for ln in lines if ln.startswith(b"503"))


def test_journal_records_submission_and_refusal(live) -> None:
    pdir, _ = live
    with login(pdir) as s:
        s.sendmail(CLAIRE, [PAUL], make_message("journal", "journal body text"))
        s.docmd("RSET")
        s.docmd("MAIL", f"FROM:<{CLAIRE}>")
        s.docmd("RCPT", "TO:<ghost@demo.mssante.fr>")
    from audit.tables import audit_entry

    ctx = pdir.context()
    try:
        def actions(conn):
            return conn.execute(select(audit_entry)).mappings().all()

        from tests.support.net import wait_for

        def refused_seen():
            rows = ctx.db.read_sync(actions)
            return rows if any(r["action"] == "message.refused" for r in rows) else None

        rows: list[Any] = wait_for(refused_seen, 10, "refusal entry")  # type: ignore[assignment]
    finally:
        ctx.close()
    kinds = {r["action"] for r in rows}
    assert {"message.accepted", "message.delivered", "login.succeeded", "message.refused"} <= kinds
    text = repr(rows)
    assert "journal body text" not in text and "Subject" not in text


def test_raw_database_never_holds_plaintext(live, request: pytest.FixtureRequest) -> None:
    pdir, _ = live
    subject = "Diagnostic-confidentiel-Zx81"
    body = "Resultat-biopsie-Qw42"
    with login(pdir) as s:
        s.sendmail(CLAIRE, [PAUL], make_message(subject, body))
    assert any(body.encode() in b for b in stored_bodies(pdir, PAUL))
    url = pdir.config.database_url
    if url.startswith("sqlite"):
        files = list(pdir.root.glob("caducee.db*"))
        data = b"".join(p.read_bytes() for p in files)
    else:
        pg = request.getfixturevalue("pg_server")
        data = pg.dump(url.rsplit("/", 1)[1])
    assert len(data) > 10_000
    assert subject.encode() not in data
    assert body.encode() not in data


def test_auth_external_with_client_certificate(live, tmp_path: Path) -> None:
    from caducee import pki
    from mailstore import accounts as accts

    pdir, _ = live
    ca = pki.load(pdir.ca, pdir.root / "tls" / "ca.key")
    issued = pki.issue_client(ca, "Dr Paul Lefevre", "810101234567")
    pki.write_cert(tmp_path / "c.crt", issued.cert)
    pki.write_key(tmp_path / "c.key", issued.key)
    ctx = pdir.context()
    try:
        ctx.db.write_sync(lambda tx: accts.set_cert_subject(tx.conn, PAUL, "810101234567"))
    finally:
        ctx.close()
    tls = pdir.client_tls()
    tls.load_cert_chain(str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    with connect(pdir) as s:
        s.starttls(context=tls)
        s.ehlo("client.test")
        assert "EXTERNAL" in s.esmtp_features["auth"].split()
        code, text = s.docmd("AUTH", "EXTERNAL =")
        assert code == 235, text
        assert s.docmd("MAIL", f"FROM:<{PAUL}>")[0] == 250
    # A certificate from another CA is not accepted, and EXTERNAL is not offered without one.
    other = pki.create_ca("Rogue CA")
    rogue = pki.issue_client(other, "Rogue", "810101234567")
    pki.write_cert(tmp_path / "r.crt", rogue.cert)
    pki.write_key(tmp_path / "r.key", rogue.key)
    bad = pdir.client_tls()
    bad.load_cert_chain(str(tmp_path / "r.crt"), str(tmp_path / "r.key"))
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)), \
            connect(pdir) as s:
        s.starttls(context=bad)
        s.ehlo("client.test")
        s.docmd("AUTH", "EXTERNAL =")
    with login(pdir, PAUL) as s:
        assert "EXTERNAL" not in s.esmtp_features["auth"].split()
