"""Smoke tests of the benchmark harnesses: each real peer starts, takes a message, stops clean.

The benchmarks themselves are never part of the suite; these keep their harnesses working.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import shutil
import smtplib
import ssl
import time

import psutil
import pytest

from benchmarks.mime_corpus import make
from benchmarks.peers.caducee import Caducee
from benchmarks.peers.dovecot_imap import DovecotImap, MaildirMessage
from benchmarks.peers.postfix_dovecot import DovecotUser, PostfixDovecot
from benchmarks.smtp_load import LoadSpec, make_message, run_load
from tests.support.net import wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="Postfix instances need root")
needs_postfix = pytest.mark.skipif(
    shutil.which("postfix") is None or shutil.which("dovecot") is None,
    reason="Debian's postfix and dovecot-imapd/lmtpd are not installed (scripts/test.sh)",
)
needs_dovecot = pytest.mark.skipif(
    shutil.which("dovecot") is None, reason="Debian's dovecot-imapd is not installed"
)

USER = "bench@bench.test"


def _tls(cafile: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    return ctx


def _all_gone(procs: list[psutil.Process]) -> bool:
    return not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@needs_root
@needs_postfix
def test_postfix_dovecot_delivers_over_lmtp_and_stops_clean() -> None:
    with PostfixDovecot([DovecotUser(USER, "secret")]) as peer:
        procs = peer.processes()
        assert {p.name() for p in procs} >= {"master", "dovecot"}
        with smtplib.SMTP("127.0.0.1", peer.smtp_port, timeout=10) as s:
            s.ehlo()
            assert not s.has_extn("auth"), "AUTH must wait for TLS"
            s.starttls(context=_tls(peer.postfix.cert_file))
            s.login(USER, "secret")
            s.sendmail(USER, [USER], make_message(0, 2048, USER, USER))
        wait_for(lambda: peer.count_messages(USER) == 1, 20, "the message in the Maildir")
        # The load generator against the same peer: a few messages, two clients.
        spec = LoadSpec(
            "127.0.0.1", peer.smtp_port, USER, "secret", USER, [USER],
            [make_message(i, 4096, USER, USER) for i in range(6)], 2, peer.postfix.cert_file,
        )
        res = asyncio.run(run_load(spec, stored=lambda: peer.count_messages(USER) - 1))
        assert (res.accepted, dict(res.failures)) == (6, {})
        assert res.e2e_seconds is not None
    assert _all_gone(procs)


@needs_dovecot
def test_dovecot_imap_serves_a_prefilled_maildir_and_stops_clean() -> None:
    msgs = [make(i) for i in range(3)]
    with DovecotImap(
        (MaildirMessage(m.raw, m.flags, m.internal_date) for m in msgs), USER, "pw"
    ) as d:
        procs = d.processes()
        imap = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=10)
        try:
            imap.starttls(_tls(d.cert_file))
            imap.login(USER, "pw")
            typ, data = imap.select("INBOX")
            assert (typ, data) == ("OK", [b"3"])
            typ, fetched = imap.fetch("1:3", "(BODY.PEEK[])")
            bodies = sorted(part[1] for part in fetched if isinstance(part, tuple))
            assert bodies == sorted(m.raw for m in msgs)  # byte-exact, CRLF restored
            typ, dates = imap.fetch("1:3", "(INTERNALDATE)")
            got = {time.mktime(imaplib.Internaldate2tuple(d)) for d in dates}  # type: ignore[arg-type]
            assert got == {m.internal_date.timestamp() for m in msgs}
        finally:
            imap.logout()
    assert _all_gone(procs)


def test_caducee_harness_starts_accepts_a_message_and_stops() -> None:
    with Caducee(["alice", "bob"]) as cad:
        procs = cad.processes()
        a, b = cad.address("alice"), cad.address("bob")
        before = cad.count_messages()
        with smtplib.SMTP("127.0.0.1", cad.submission_port, timeout=10) as s:
            s.starttls(context=_tls(cad.ca_file))
            s.login(a, cad.password(a))
            s.sendmail(a, [b], make_message(0, 2048, a, b))
        assert cad.count_messages() == before + 1
    assert _all_gone(procs)
