"""Outbound review: the queue runner against real peers on loopback sockets — NSD for the
MX records, aiosmtpd servers with STARTTLS (and a raw socket server for a refusing
greeting) playing the other operators."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from aiosmtpd.smtp import SMTP

from caducee.context import Context
from mailstore.accounts import get_by_address
from smtp_gateway.delivery import DeliveryAgent, Incoming
from smtp_gateway.mx import DnsSettings, MxResolver
from tests.smtp_gateway.test_queue_runner import (
    CLAIRE,
    Clock,
    CountingController,
    ScriptedPeer,
    ctx,
    entries,
    inbox,
    make_runner,
    parse,
    pdir,
    peer_tls,
    queue_message_to,
)
from tests.support.mail_peers import NsdServer
from tests.support.net import free_port
from tests.support.platform import PlatformDir

__all__ = ["ctx", "pdir"]  # fixtures shared with test_queue_runner


@pytest.fixture(scope="module")
def dns_server() -> Iterator[NsdServer]:
    server = NsdServer({
        "peer.test": ["@ IN MX 10 mx", "mx IN A 127.0.0.1"],
        # Two MX hosts: the preferred one on 127.0.0.2, the backup on 127.0.0.1.
        "twomx.test": ["@ IN MX 10 mx1", "@ IN MX 20 mx2",
                       "mx1 IN A 127.0.0.2", "mx2 IN A 127.0.0.1"],
        # Exists, but no MX and no address: no host can take its mail.
        "noaddr.test": ["@ IN TXT \"v=spf1 -all\""],
        # An MX whose host does not exist.
        "deadmx.test": ["@ IN MX 10 gone.deadmx.test."],
    }).start()
    yield server
    server.stop()


def two_ip_port() -> int:
    """A port free on both 127.0.0.1 and 127.0.0.2."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.2", port))
            except OSError:
                continue
        return port


@pytest.fixture
def start_peer(pdir: PlatformDir, tmp_path: Path) -> Iterator[Any]:
    started: list[CountingController] = []

    def start(peer: Any, *, port: int | None = None, host: str = "127.0.0.1",
              names: tuple[str, ...] = ("mx.peer.test",), **extra: Any) -> CountingController:
        controller = CountingController(
            peer, hostname=host, port=port or free_port(), server_hostname=names[0],
            tls_context=peer_tls(pdir, tmp_path, names=names), require_starttls=True, **extra)
        controller.start()
        controller.connections = 0
        started.append(controller)
        return controller

    yield start
    for c in started:
        c.stop()


class PerRecipientPeer(ScriptedPeer):
    """Answers RCPT by local part: ``ok…`` 250, ``later…`` 451, anything else 550."""

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        local = address.split("@")[0]
        if local.startswith("ok"):
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        if local.startswith("later"):
            return "451 4.2.0 Mailbox busy"
        return "550 5.1.1 No such user here"


class No8BitMimePeer(ScriptedPeer):
    """A peer that does not advertise 8BITMIME (RFC 6152)."""

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [r for r in responses if "8BITMIME" not in r]


async def queue_raw(ctx: Context, delivery: DeliveryAgent, recipients: list[str],
                    raw: bytes) -> None:
    claire = await ctx.db.read(lambda c: get_by_address(c, CLAIRE))
    assert claire is not None
    await delivery.deliver(Incoming(raw=raw, mail_from=CLAIRE, recipients=(), actor=CLAIRE,
                                    protocol="smtp", remote=tuple(recipients),
                                    sender_account_id=claire.id))


def dsn_blocks(raw: bytes) -> list[Any]:
    dsn = parse(raw)
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    return list(status.get_payload())


# -- per-recipient results ---------------------------------------------------------------------


async def test_per_recipient_results_in_one_transaction(ctx, pdir, dns_server,
                                                         start_peer) -> None:
    peer = PerRecipientPeer()
    controller = start_peer(peer)
    clock = Clock()
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, clock)
    before = len(await inbox(ctx, CLAIRE))
    rcpts = ["ok1@peer.test", "later@peer.test", "nobody@peer.test", "ok2@peer.test"]
    await queue_message_to(ctx, delivery, rcpts, "mixed results")
    assert await runner.run_once() == 4
    assert [r.recipients for r in peer.received] == [["ok1@peer.test", "ok2@peer.test"]]
    (left,) = await entries(ctx)
    assert left.recipient == "later@peer.test" and left.attempts == 1
    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    _, *blocks = dsn_blocks(dsn_raw)
    assert [b["Final-Recipient"] for b in blocks] == ["rfc822; nobody@peer.test"]
    assert blocks[0]["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"


# -- 8BITMIME (RFC 6152) ------------------------------------------------------------------------


def eight_bit_message() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CLAIRE, "eight@peer.test", "huit bits"
    msg["Message-ID"] = "<eight-bit@demo.mssante.fr>"
    msg.set_content("Résultats d'analyse : hémoglobine normale.", cte="8bit")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert not raw.isascii() and raw.split(b"\r\n\r\n")[0].isascii()
    return raw


async def test_8bit_body_is_not_sent_to_a_host_without_8bitmime(ctx, pdir, dns_server,
                                                                 start_peer) -> None:
    peer = No8BitMimePeer()
    controller = start_peer(peer)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    await queue_raw(ctx, delivery, ["eight@peer.test"], eight_bit_message())
    before = len(await inbox(ctx, CLAIRE))
    assert await runner.run_once() == 1
    assert peer.received == [] and peer.mails == 0  # never sent as is
    assert await entries(ctx) == []
    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    _, block = dsn_blocks(dsn_raw)
    assert block["Final-Recipient"] == "rfc822; eight@peer.test"
    assert (block["Action"], block["Status"]) == ("failed", "5.6.3")
    assert block["Remote-MTA"] == "dns; mx.peer.test"


async def test_8bit_body_goes_with_body_8bitmime_when_offered(ctx, pdir, dns_server,
                                                               start_peer) -> None:
    peer = ScriptedPeer()
    controller = start_peer(peer)
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    await queue_raw(ctx, delivery, ["eight@peer.test"], eight_bit_message())
    assert await runner.run_once() == 1
    (got,) = peer.received
    assert "Résultats".encode() in got.data
    assert await entries(ctx) == []


# -- next MX host --------------------------------------------------------------------------------


async def test_next_mx_on_421_greeting(ctx, pdir, dns_server, start_peer) -> None:
    port = two_ip_port()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 4.3.2 mx1.twomx.test busy, try later\r\n")
        await writer.drain()
        writer.close()

    busy = await asyncio.start_server(refuse, "127.0.0.2", port)
    try:
        peer = ScriptedPeer()
        start_peer(peer, port=port, names=("mx2.twomx.test",))
        runner, delivery = make_runner(ctx, pdir, dns_server, port, Clock())
        await queue_message_to(ctx, delivery, ["doc@twomx.test"], "second mx")
        assert await runner.run_once() == 1
        assert [r.recipients for r in peer.received] == [["doc@twomx.test"]]
        assert await entries(ctx) == []
    finally:
        busy.close()
        await busy.wait_closed()


# -- no usable host (RFC 5321 §5.1) ---------------------------------------------------------------


@pytest.mark.parametrize("domain", ["noaddr.test", "deadmx.test"])
async def test_no_usable_host_bounces_at_once(ctx, pdir, dns_server, start_peer,
                                              domain: str) -> None:
    controller = start_peer(ScriptedPeer())
    runner, delivery = make_runner(ctx, pdir, dns_server, controller.port, Clock())
    before = len(await inbox(ctx, CLAIRE))
    await queue_message_to(ctx, delivery, [f"x@{domain}"], f"no host {domain}")
    assert await runner.run_once() == 1
    assert await entries(ctx) == []
    (dsn_raw,) = (await inbox(ctx, CLAIRE))[before:]
    _, block = dsn_blocks(dsn_raw)
    assert block["Status"] == "5.4.4"


# -- two runners, one lease (ARCHITECTURE.md §4 "SKIP LOCKED") --------------------------------------


class StallingPeer(ScriptedPeer):
    """Holds the first DATA until ``release`` is set (thread events: the controller runs
    its own event loop in a thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.to_thread(self.release.wait, 10)
        return await super().handle_DATA(server, session, envelope)


async def test_a_runner_whose_lease_was_taken_over_sends_no_more(ctx, pdir, dns_server,
                                                                 start_peer) -> None:
    peer = StallingPeer()
    controller = start_peer(peer)
    clock = Clock()
    lease = timedelta(minutes=15)
    slow, _ = make_runner(ctx, pdir, dns_server, controller.port, clock, lease=lease,
                          owner="node-slow")
    other, delivery = make_runner(ctx, pdir, dns_server, controller.port, clock, lease=lease,
                                  owner="node-other")
    for i in range(3):
        await queue_message_to(ctx, delivery, [f"twice{i}@peer.test"], f"lease {i}")
    first_round = asyncio.create_task(slow.run_once())
    assert await asyncio.to_thread(peer.stalled.wait, 10)
    # The slow node's round outlives its lease: another node takes the entries over.
    clock.advance(lease.total_seconds() + 1)
    assert await other.run_once() == 3
    peer.release.set()
    assert await asyncio.wait_for(first_round, 10) == 3
    subjects = sorted(r.data.split(b"Subject: ")[1].split(b"\r\n")[0] for r in peer.received)
    # The message on the wire when the lease ran out may go twice (RFC 1047); no other.
    assert subjects.count(b"lease 1") == 1 and subjects.count(b"lease 2") == 1, subjects
    assert await entries(ctx) == []


# -- a name server that never answers AAAA ------------------------------------------------------------


V6BROKEN_ZONE = {
    ("v6broken.test.", "MX"): "10 mx.v6broken.test.",
    ("mx.v6broken.test.", "A"): "127.0.0.1",
}


class DropsAaaaDns:
    """A small authoritative DNS server (dnspython) on a loopback UDP port that answers MX
    and A for ``v6broken.test`` and drops every AAAA query — as broken servers and
    middleboxes do: the resolver times out on AAAA."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.aaaa_queries = 0

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if rdtype == "AAAA":
                self.aaaa_queries += 1
                continue  # never answered
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            value = V6BROKEN_ZONE.get((question.name.to_text(), rdtype))
            if value is not None:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype,
                                                        value))
            self.sock.sendto(reply.to_wire(), addr)

    def __enter__(self) -> DropsAaaaDns:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)


async def test_an_aaaa_timeout_keeps_the_a_addresses() -> None:
    with DropsAaaaDns() as server:
        mx = MxResolver(DnsSettings(("127.0.0.1",), server.port, timeout=1.0))
        (host,) = await mx.hosts("v6broken.test")
        assert (host.name, host.addresses) == ("mx.v6broken.test", ("127.0.0.1",))
        assert server.aaaa_queries >= 1
