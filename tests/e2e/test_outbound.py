"""Mail leaves for another operator: submission → our queue → a real Postfix (the other
operator) found through a real DNS server (NSD) on loopback, over verified mutual TLS.
Then kill -9 with entries queued: delivered after the restart, once."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from sqlalchemy import Connection, select

from audit.entries import query as journal_query
from mailstore import messages
from mailstore.queue_tables import queue_entry, queue_message
from mailstore.tables import account, mailbox, message
from smtp_gateway import queue_store
from tests.support.mail_peers import OTHER_DOMAIN, OperatorWorld, build_world
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, SubprocessPlatform, configure, database_url

CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
PASSWORD = "outbound-pw-123"
REMOTE = f"someone@{OTHER_DOMAIN}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[OperatorWorld, InProcessPlatform]
]:
    url = database_url(request, request.param)
    w = build_world(tmp_path_factory.mktemp("outbound"), url)
    for address in (CLAIRE, PAUL):
        w.pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(w.pdir).start()
    yield w, plat
    plat.stop()
    w.stop()


def submit(w: OperatorWorld, to: list[str], subject: str, body: str = "Bonjour cher confrere.",
           sender: str = CLAIRE) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(to), subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", w.pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=w.pdir.client_tls())
        s.login(sender, PASSWORD)
        assert s.send_message(msg) == {}


def delivered_with(w: OperatorWorld, local_part: str, marker: str) -> list[bytes]:
    return [m for m in w.postfix.delivered(local_part) if marker.encode() in m]


def queue_size(w: OperatorWorld) -> int:
    ctx = w.pdir.context()
    try:
        return ctx.db.read_sync(queue_store.count)
    finally:
        ctx.close()


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


def test_professional_to_other_operator_over_verified_mutual_tls(world) -> None:
    w, _ = world
    submit(w, [REMOTE], "Compte rendu outbound-1")
    found: Any = wait_for(lambda: delivered_with(w, "someone", "outbound-1"), 30,
                          "Postfix to store the message")
    (got,) = found
    # Postfix's Received field: STARTTLS, and our client certificate verified by its CA.
    received = got.split(b"\n\n", 1)[0]
    assert b"(using TLSv1." in received
    assert b'Client CN "mail.demo.mssante.fr"' in received
    assert b"(verified OK)" in received
    # Our DKIM signature verifies at the other side (key published in the loopback DNS).
    settings = w.dns_settings()
    assert dkim.verify(got, dnsfunc=lambda name, timeout=5: settings.txt_lookup(name.decode()))
    wait_for(lambda: queue_size(w) == 0, 10, "the queue to empty")
    ctx = w.pdir.context()
    try:
        events = ctx.db.read_sync(lambda c: journal_query(c, actions=["message.relayed"]))
    finally:
        ctx.close()
    relayed = [e.event for e in events if ("recipient", REMOTE) in e.event.object_ids]
    assert relayed and relayed[-1].outcome == "ok"
    assert ("remote_mta", f"mx.{OTHER_DOMAIN}") in relayed[-1].object_ids


def test_mixed_local_and_remote_recipients(world) -> None:
    w, _ = world
    submit(w, [PAUL, REMOTE, f"dr.peer@{OTHER_DOMAIN}"], "Staff outbound-2")
    wait_for(lambda: delivered_with(w, "someone", "outbound-2"), 30, "someone's copy")
    wait_for(lambda: delivered_with(w, "dr.peer", "outbound-2"), 30, "dr.peer's copy")
    assert any(b"outbound-2" in m for m in inbox(w, PAUL))


def test_null_mx_bounces_with_a_dsn(world) -> None:
    w, _ = world
    before = len(inbox(w, CLAIRE))
    w.pdir.trust("nullmx.test")
    _, plat = world
    plat.call(plat.platform.services["policy"].reload_trust)
    submit(w, ["nobody@nullmx.test"], "vers nulle part")
    found: Any = wait_for(lambda: [m for m in inbox(w, CLAIRE)[before:]
                                   if b"delivery-status" in m], 30, "the DSN")
    dsn: Any = email.message_from_bytes(found[0], policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert blocks[1]["Final-Recipient"] == "rfc822; nobody@nullmx.test"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.10"


# -- kill -9 --------------------------------------------------------------------------------

SECRET = "Confidentiel-queue-7f3a"


def assert_not_in_clear(w: OperatorWorld, secret: str) -> None:
    """The queued copies are encrypted: the database holds no trace of the body."""
    ctx = w.pdir.context()
    try:
        rows = ctx.db.read_sync(lambda c: c.execute(
            select(queue_message.c.body, queue_entry.c.recipient)
            .select_from(queue_entry.join(queue_message))).all())
    finally:
        ctx.close()
    assert rows and {r.recipient for r in rows} == {REMOTE}
    assert all(secret.encode() not in r.body for r in rows)
    for path in w.pdir.root.glob("caducee.db*"):  # SQLite file and its WAL
        assert secret.encode() not in path.read_bytes()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_with_entries_queued_delivers_once_after_restart(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = database_url(request, backend)
    w = build_world(tmp_path_factory.mktemp("kill"), url)
    try:
        w.pdir.add_account(CLAIRE, PASSWORD)
        configure(w.pdir, "server", shutdown_grace=5.0)
        # First life: no queue service, so the entries are acknowledged and stay queued.
        first = SubprocessPlatform(w.pdir, services=("submission", "mta")).start()
        try:
            for i in range(3):
                submit(w, [REMOTE], f"survivant-{i}", body=f"Corps {SECRET} {i}")
            assert queue_size(w) == 3
            assert_not_in_clear(w, SECRET)
        finally:
            first.kill()
        assert queue_size(w) == 3
        second = SubprocessPlatform(w.pdir).start()
        try:
            wait_for(lambda: queue_size(w) == 0, 40, "the queue to drain after restart")
            got: Any = wait_for(lambda: len(delivered_with(w, "someone", "survivant-")) >= 3
                           and delivered_with(w, "someone", "survivant-"), 30, "3 deliveries")
            subjects = sorted(next(line for line in m.splitlines()
                                   if line.startswith(b"Subject:")) for m in got)
            assert subjects == [f"Subject: survivant-{i}".encode() for i in range(3)]
        finally:
            second.stop()
    finally:
        w.stop()
