"""The queue runner against real peers: NSD on loopback for MX, small aiosmtpd servers with
STARTTLS playing the other operator (accepting, deferring, refusing), an injectable clock
for the retry schedule, and DSNs delivered into the sender's INBOX."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import Connection, delete, select

from audit.entries import query as journal_query
from caducee import pki
from caducee.context import Context
from mailstore import messages
from mailstore.accounts import get_by_address
from mailstore.queue_tables import queue_entry, queue_message
from mailstore.tables import account, mailbox, message
from smtp_gateway import queue_store
from smtp_gateway.delivery import DeliveryAgent, Incoming
from smtp_gateway.mx import DnsPermanentError, DnsSettings, MxResolver, order_mx
from smtp_gateway.outbound_client import ClientSettings, client_tls_context
from smtp_gateway.queue_runner import QueueRunner, RunnerSettings
from tests.support.mail_peers import NsdServer
from tests.support.net import async_wait_for, free_port
from tests.support.platform import PlatformDir, database_url, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
HOSTNAME = "mail.demo.mssante.fr"


# -- the scene ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dns_server() -> Iterator[NsdServer]:
    server = NsdServer({
        "peer.test": ["@ IN MX 10 mx", "mx IN A 127.0.0.1"],
        "nomx.test": ["@ IN A 127.0.0.1"],
        "nullmx.test": ["@ IN MX 0 ."],
    }).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PlatformDir:
    url = database_url(request, request.param)
    p = make_platform_dir(tmp_path_factory.mktemp("runner"), url)
    p.add_account(CLAIRE)
    return p


@pytest.fixture
def ctx(pdir: PlatformDir) -> Iterator[Context]:
    c = pdir.context()
    c.db.write_sync(lambda tx: (tx.conn.execute(delete(queue_entry)),
                                tx.conn.execute(delete(queue_message))))
    yield c
    c.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    peer_cert: dict[str, Any] | None
    tls_version: str | None


@dataclass
class ScriptedPeer:
    """The other operator's SMTP server: ``mode`` decides its answer to RCPT."""

    mode: str = "accept"
    received: list[Received] = field(default_factory=list)
    mails: int = 0

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.mails += 1
        envelope.mail_from = address
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.mode == "tempfail":
            return "451 4.3.0 Try again later"
        if self.mode == "permfail":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        assert server.transport is not None
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.received.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
            ssl_object.getpeercert() if ssl_object else None,
            ssl_object.version() if ssl_object else None,
        ))
        return "250 2.0.0 Ok: queued"


class CountingController(Controller):
    connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        smtp: SMTP = super().factory()
        return smtp


def peer_tls(
    pdir: PlatformDir, tmp: Path, *, own_ca: bool = False,
    names: tuple[str, ...] = ("mx.peer.test", "nomx.test"),
) -> ssl.SSLContext:
    """The peer's TLS: a certificate for ``names`` from our CA (or from a stranger's)."""
    ca = pki.create_ca("Stranger CA") if own_ca else pki.load(pdir.ca, pdir.root / "tls/ca.key")
    issued = pki.issue_server(ca, list(names))
    cert, key = tmp / f"{names[0]}.crt", tmp / f"{names[0]}.key"
    pki.write_cert(cert, issued.cert)
    pki.write_key(key, issued.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(pdir.ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


@pytest.fixture
def start_peer(pdir: PlatformDir, tmp_path: Path) -> Iterator[Any]:
    started: list[CountingController] = []

    def start(peer: ScriptedPeer, *, tls: bool = True, own_ca: bool = False
              ) -> CountingController:
        kwargs: dict[str, Any] = {}
        if tls:
            kwargs = {"tls_context": peer_tls(pdir, tmp_path, own_ca=own_ca),
                      "require_starttls": True}
        controller = CountingController(peer, hostname="127.0.0.1", port=free_port(),
                                        server_hostname="mx.peer.test", **kwargs)
        controller.start()
        controller.connections = 0  # the controller's own start-up probe
        started.append(controller)
        return controller

    yield start
    for c in started:
        c.stop()


def make_runner(ctx: Context, pdir: PlatformDir, dns_server: NsdServer, port: int,
                clock: Clock, **settings: Any) -> tuple[QueueRunner, DeliveryAgent]:
    delivery = DeliveryAgent(db=ctx.db, keystore=ctx.keystore, hostname=HOSTNAME,
                             journal=ctx.journal,
                             queue_max_age=settings.pop("max_age", timedelta(days=5)))
    client = ClientSettings(
        hostname=HOSTNAME, port=port, connect_timeout=5, command_timeout=10,
        tls_context=client_tls_context(pdir.ca, pdir.root / "tls/server.crt",
                                       pdir.root / "tls/server.key"),
    )
    runner = QueueRunner(
        db=ctx.db, keystore=ctx.keystore, delivery=delivery,
        mx=MxResolver(DnsSettings(("127.0.0.1",), dns_server.port, timeout=5)),
        client=client, journal=ctx.journal, clock=clock,
        settings=RunnerSettings(hostname=HOSTNAME, **settings),
    )
    return runner, delivery


async def queue_message_to(ctx: Context, delivery: DeliveryAgent, recipients: list[str],
                           subject: str) -> None:
    claire = await ctx.db.read(lambda c: get_by_address(c, CLAIRE))
    assert claire is not None
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CLAIRE, ", ".join(recipients), subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@demo.mssante.fr>"
    msg.set_content("Compte rendu de consultation.")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    await delivery.deliver(Incoming(raw=raw, mail_from=CLAIRE, recipients=(), actor=CLAIRE,
                                    protocol="smtp", remote=tuple(recipients),
                                    sender_account_id=claire.id))


async def entries(ctx: Context) -> list[queue_store.Entry]:
    return await ctx.db.read(queue_store.list_entries)


async def inbox(ctx: Context, address: str) -> list[bytes]:
    def read(conn: Connection) -> list[bytes]:
        rows = conn.execute(
            select(account.c.id, message.c.blob_id)
            .select_from(message.join(mailbox).join(account))
            .where(account.c.address == address, mailbox.c.name == "INBOX")
            .order_by(message.c.uid)
        ).all()
        return [messages.read_body(conn, ctx.keystore, r.id, r.blob_id) for r in rows]

    return await ctx.db.read(read)


async def journal(ctx: Context, action: str) -> list[Any]:
    return [e.event for e in await ctx.db.read(lambda c: journal_query(c, actions=[action]))]


def parse(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


# -- tests -------------------------------------------------------------------------------------


async def test_retries_on_schedule_then_bounces_with_a_dsn(ctx, pdir, dns_server,
                                                           start_peer) -> None:
    peer = ScriptedPeer(mode="tempfail")
    controller = start_peer(peer)
    clock = Clock()
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, clock)
    before = len(await inbox(ctx, CLAIRE))
    deferred_before = len(await journal(ctx, "message.deferred"))
    await queue_message_to(ctx, delivery, ["dr.who@peer.test"], "retry schedule")

    assert await runner.run_once() == 1
    (e,) = await entries(ctx)
    assert e.attempts == 1 and e.state == "queued"
    assert e.next_attempt == clock.now + timedelta(minutes=1)
    assert e.last_error == "mx.peer.test: 451 4.3.0 Try again later"
    assert await runner.run_once() == 0  # not due yet
    clock.advance(59)
    assert await runner.run_once() == 0
    clock.advance(1)
    assert await runner.run_once() == 1
    (e,) = await entries(ctx)
    assert e.attempts == 2 and e.next_attempt == clock.now + timedelta(minutes=5)

    peer.mode = "permfail"
    clock.advance(300)
    assert await runner.run_once() == 1
    assert await entries(ctx) == []
    assert len(await journal(ctx, "message.deferred")) == deferred_before + 2

    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    dsn = parse(dsn_raw)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Auto-Submitted"] == "auto-replied"
    _human, status, headers = dsn.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert per_rcpt["Final-Recipient"] == "rfc822; dr.who@peer.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.peer.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: retry schedule" in headers.get_payload()
    assert "Compte rendu" not in dsn_raw.decode()  # the body is not returned
    (bounced,) = [b for b in await journal(ctx, "message.bounced")
                  if b.message_id == "<retry-schedule@demo.mssante.fr>"]
    assert (bounced.outcome, bounced.reason) == ("refused", "550 5.1.1")
    assert any(d.queue_id == bounced.queue_id for d in await journal(ctx, "dsn.sent"))


async def test_expiry_bounces_with_4_4_7(ctx, pdir, dns_server, start_peer) -> None:
    controller = start_peer(ScriptedPeer(mode="tempfail"))
    clock = Clock()
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, clock,
                                   max_age=timedelta(minutes=3))
    before = len(await inbox(ctx, CLAIRE))
    await queue_message_to(ctx, delivery, ["late@peer.test"], "too late")
    assert await runner.run_once() == 1
    clock.advance(3 * 60 + 1)
    assert await runner.run_once() == 1
    assert await entries(ctx) == []
    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    dsn = parse(dsn_raw)
    per_rcpt = dsn.get_payload()[1].get_payload()[1]
    assert per_rcpt["Status"] == "4.4.7" and per_rcpt["Action"] == "failed"


async def test_one_verified_session_carries_several_messages(ctx, pdir, dns_server,
                                                             start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    await queue_message_to(ctx, delivery, ["a@peer.test", "b@peer.test"], "first")
    await queue_message_to(ctx, delivery, ["a@peer.test"], "second")
    await queue_message_to(ctx, delivery, ["c@nomx.test"], "implicit mx")  # A record only
    assert await runner.run_once() == 4
    assert await entries(ctx) == []
    by_subject = {r.data.split(b"Subject: ")[1].split(b"\r\n")[0]: r for r in peer.received}
    assert sorted(by_subject) == [b"first", b"implicit mx", b"second"]
    assert by_subject[b"first"].recipients == ["a@peer.test", "b@peer.test"]
    # peer.test: one session for its two messages; nomx.test: its own session.
    assert controller.connections == 2
    first = by_subject[b"first"]
    assert first.tls_version in ("TLSv1.2", "TLSv1.3")
    assert first.peer_cert is not None  # mutual TLS: our certificate was presented
    assert ("commonName", HOSTNAME) in [kv for rdn in first.peer_cert["subject"] for kv in rdn]
    assert len(await journal(ctx, "message.relayed")) >= 4


async def test_no_starttls_no_delivery(ctx, pdir, dns_server, start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer, tls=False)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    await queue_message_to(ctx, delivery, ["x@peer.test"], "cleartext never")
    assert await runner.run_once() == 1
    (e,) = await entries(ctx)
    assert e.attempts == 1 and "does not offer STARTTLS" in (e.last_error or "")
    assert peer.mails == 0


# The peer (aiosmtpd) logs our aborted handshake as a session exception: expected here.
@pytest.mark.allow_crash
async def test_unverified_peer_certificate_no_delivery(ctx, pdir, dns_server,
                                                       start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer, own_ca=True)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    await queue_message_to(ctx, delivery, ["x@peer.test"], "stranger")
    assert await runner.run_once() == 1
    (e,) = await entries(ctx)
    assert "CERTIFICATE_VERIFY_FAILED" in (e.last_error or "")
    assert peer.mails == 0


async def test_null_mx_bounces_at_once(ctx, pdir, dns_server, start_peer) -> None:
    controller = start_peer(ScriptedPeer())
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    before = len(await inbox(ctx, CLAIRE))
    await queue_message_to(ctx, delivery, ["x@nullmx.test"], "null mx")
    assert await runner.run_once() == 1
    assert await entries(ctx) == []
    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    assert b"Status: 5.1.10" in dsn_raw


async def test_null_sender_gets_no_dsn(ctx, pdir, dns_server, start_peer) -> None:
    controller = start_peer(ScriptedPeer(mode="permfail"))
    clock = Clock()
    runner, _ = make_runner(ctx, pdir, dns_server, controller.port, clock)
    claire = await ctx.db.read(lambda c: get_by_address(c, CLAIRE))
    assert claire is not None
    before = len(await inbox(ctx, CLAIRE))
    await ctx.db.write(lambda tx: queue_store.enqueue(
        tx.conn, ctx.keystore, account_id=claire.id, sender="", recipients=["x@peer.test"],
        raw=b"Subject: a bounce\r\n\r\nx\r\n", queue_id="NULLSENDER", message_id="<n@x>",
        now=clock.now, max_age=timedelta(days=5)))
    assert await runner.run_once() == 1
    assert await entries(ctx) == []
    assert len(await inbox(ctx, CLAIRE)) == before
    assert any(b.queue_id == "NULLSENDER" for b in await journal(ctx, "message.bounced"))


async def test_a_crashed_node_lease_expires_then_delivered_once(ctx, pdir, dns_server,
                                                                start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer)
    clock = Clock()
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, clock,
                                   lease=timedelta(minutes=15))
    await queue_message_to(ctx, delivery, ["crash@peer.test"], "after a crash")
    # Another node claims the entry and dies before recording anything.
    claimed = await ctx.db.write(lambda tx: queue_store.claim(
        tx.conn, now=clock.now, lease=timedelta(minutes=15), owner="dead-node"))
    assert len(claimed) == 1
    assert await runner.run_once() == 0  # leased: not ours to take
    clock.advance(15 * 60 + 1)
    assert await runner.run_once() == 1
    assert len(peer.received) == 1
    assert await entries(ctx) == []


async def test_wakes_on_commit_and_sleeps_when_idle(ctx, pdir, dns_server, start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port,
                                   Clock(), max_sleep=30.0)
    runner.clock = lambda: datetime.now(UTC)
    delivery.on_queued = runner.wake
    runner.start()
    try:
        await async_wait_for(lambda: _true_after(runner.rounds >= 1), 5, "the first round")
        idle_rounds = runner.rounds
        await asyncio.sleep(0.3)  # idle: the runner sleeps (no polling)
        assert runner.rounds == idle_rounds
        await queue_message_to(ctx, delivery, ["now@peer.test"], "wake up")
        await async_wait_for(lambda: _true_after(len(peer.received) == 1), 5, "the delivery")
        assert runner.rounds <= idle_rounds + 2
    finally:
        await runner.close(5)


async def _true_after(value: bool) -> bool:
    return value


# -- MX lookup (RFC 5321 §5.1, RFC 7505) ---------------------------------------------------------


def test_mx_order_by_preference_with_equal_ones_shuffled() -> None:
    records = [(20, "b.test."), (10, "a1.test."), (10, "a2.test."), (30, "c.test")]
    seen = set()
    for seed in range(20):
        order = order_mx(records, random.Random(seed))
        assert [p for p, _ in order] == [10, 10, 20, 30]
        assert order[2:] == [(20, "b.test"), (30, "c.test")]
        seen.add(tuple(order[:2]))
    assert len(seen) == 2  # both orders of the two preference-10 hosts occur
    assert order_mx([(0, ".")], random.Random(0)) == []  # null MX


async def test_mx_resolver_against_a_real_dns(dns_server) -> None:
    mx = MxResolver(DnsSettings(("127.0.0.1",), dns_server.port, timeout=3))
    (host,) = await mx.hosts("peer.test")
    assert (host.name, host.preference, host.addresses) == ("mx.peer.test", 10, ("127.0.0.1",))
    (implicit,) = await mx.hosts("nomx.test")  # no MX: the domain itself
    assert (implicit.name, implicit.addresses) == ("nomx.test", ("127.0.0.1",))
    with pytest.raises(DnsPermanentError) as null:
        await mx.hosts("nullmx.test")
    assert null.value.enhanced == "5.1.10"
    with pytest.raises(DnsPermanentError) as missing:
        await mx.hosts("nowhere.peer.test")
    assert missing.value.enhanced == "5.1.2"
