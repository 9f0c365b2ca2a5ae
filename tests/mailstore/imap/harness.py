"""An in-process IMAP server for tests: its own event loop in a thread (so blocking clients
— imaplib, mbsync, curl, neomutt — can talk to it), free ports, a test CA."""

from __future__ import annotations

import asyncio
import atexit
import imaplib
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from sqlalchemy import update

from caducee import pki
from caducee.tls import client_context, server_context
from mailstore.accounts import Account, create_account, mailbox_id
from mailstore.auth import Authenticator
from mailstore.crypto import MasterKeyring
from mailstore.db import Database
from mailstore.imap.server import ImapServer, start_imap_server
from mailstore.imap.session import ImapSettings
from mailstore.keystore import KeyStore
from mailstore.messages import Stored, append_message
from mailstore.notify import Notifier
from mailstore.tables import account

T = TypeVar("T")

#: argon2id with minimal cost, for test accounts only.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

CLIENT_ID = "810001234567"  # a practitioner identifier on the client certificate


@dataclass(frozen=True)
class TestPki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@cache
def test_pki() -> TestPki:
    """One CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    root = Path(tempfile.mkdtemp(prefix="caducee-imap-pki-"))
    atexit.register(shutil.rmtree, root, True)  # once per test process (cached)
    ca = pki.create_ca("Caducee test CA")
    server = pki.issue_server(ca, ["localhost", "127.0.0.1"])
    client = pki.issue_client(ca, "Claire Martin", CLIENT_ID, "claire@chu.test")
    paths = TestPki(
        root, root / "ca.crt", root / "server.crt", root / "server.key", root / "client.crt",
        root / "client.key",
    )
    pki.write_cert(paths.ca, ca.cert)
    pki.write_cert(paths.server_cert, server.cert)
    pki.write_key(paths.server_key, server.key)
    pki.write_cert(paths.client_cert, client.cert)
    pki.write_key(paths.client_key, client.key)
    return paths


def server_tls() -> ssl.SSLContext:
    """The listeners' TLS context over :func:`test_pki` (as the platform builds it)."""
    paths = test_pki()
    return server_context(paths.server_cert, paths.server_key, paths.ca)


def client_tls(*, with_cert: bool = False) -> ssl.SSLContext:
    """A client trusting :func:`test_pki`'s CA, presenting its client certificate if asked."""
    paths = test_pki()
    ctx = client_context(paths.ca)
    if with_cert:
        ctx.load_cert_chain(str(paths.client_cert), str(paths.client_key))
    return ctx


class ImapHarness:
    def __init__(
        self,
        db_url: str,
        *,
        settings: ImapSettings | None = None,
        journal: Any = None,
        tls: bool = True,
        ring: MasterKeyring | None = None,
    ) -> None:
        self.db_url = db_url
        self.settings = settings or ImapSettings(patient_domain="patient.test")
        self.journal = journal
        self.pki = test_pki()
        self.ssl_context = (
            server_tls() if tls else None
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="imap-test-loop")
        self.db = Database.open(db_url)
        self.keystore = KeyStore(ring or MasterKeyring.generate())
        self.notifier = Notifier()
        self.authenticator: Authenticator | None = None
        self.server: ImapServer | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> ImapHarness:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.authenticator = Authenticator(self.db)
        self.server = await start_imap_server(
            db=self.db, keystore=self.keystore, authenticator=self.authenticator,
            notifier=self.notifier, ssl_context=self.ssl_context,
            listen=[("127.0.0.1", 0)],
            implicit_tls_listen=[("127.0.0.1", 0)] if self.ssl_context else [],
            journal=self.journal, settings=self.settings,
        )

    def stop(self) -> None:
        async def _stop() -> None:
            if self.server is not None:
                await self.server.close(grace=2.0)
            await self.notifier.close()
            if self.authenticator is not None:
                self.authenticator.close()

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()
            self.db.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- addresses ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.addresses[0][1]

    @property
    def tls_port(self) -> int:
        assert self.server is not None
        return self.server.tls_addresses[0][1]

    def client_ssl(self, *, with_cert: bool = False) -> ssl.SSLContext:
        return client_tls(with_cert=with_cert)

    def imaps(self, *, with_cert: bool = False) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL(
            "127.0.0.1", self.tls_port, ssl_context=self.client_ssl(with_cert=with_cert),
            timeout=30,
        )

    def imap(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=30)

    def login(self, address: str, password: str) -> imaplib.IMAP4_SSL:
        client = self.imaps()
        client.login(address, password)
        return client

    def wire_login(self, address: str, password: str = "secret-password") -> Wire:
        """A raw connection over implicit TLS, logged in (tag ``L``), greeting read."""
        w = Wire.connect(self.tls_port, tls=self.client_ssl())
        w.line()
        reply = w.cmd(b"L", f"LOGIN {address} {password}".encode())
        assert reply.startswith(b"L OK"), reply
        return w

    # -- store helpers -----------------------------------------------------------------

    def create_account(self, address: str, password: str = "secret-password", **kw: Any) -> Account:
        """An account with a real argon2id hash, at a test-friendly cost (a login then
        verifies in milliseconds instead of ~0.5 s with production parameters)."""
        kind = kw.pop("kind", "professional")

        def job(tx: Any) -> Account:
            acc = create_account(tx.conn, self.keystore, address=address, kind=kind, **kw)
            tx.conn.execute(
                update(account).where(account.c.id == acc.id).values(
                    password_hash=_CHEAP_HASHER.hash(password)
                )
            )
            return acc

        return self.db.write_sync(job)

    def mailbox_id(self, account: Account, name: str = "INBOX") -> int:
        found = self.db.read_sync(lambda conn: mailbox_id(conn, account.id, name))
        assert found is not None
        return int(found)

    def deliver(
        self,
        account: Account,
        raws: Iterable[bytes],
        *,
        mailbox: str = "INBOX",
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> list[Stored]:
        """Store messages through the store API (as the delivery path does), then notify."""
        box = self.mailbox_id(account, mailbox)
        raws = list(raws)
        flags = list(flags)

        def job(tx: Any) -> list[Stored]:
            return [
                append_message(
                    tx, self.keystore, account.id, box, raw, flags=flags,
                    internal_date=internal_date, notify=self.notifier.mailbox_changed,
                )
                for raw in raws
            ]

        return self.db.write_sync(job)


class Wire:
    """A raw IMAP client socket: send bytes, read up to a tagged reply, with a deadline."""

    def __init__(self, sock: Any) -> None:
        import socket

        self.sock: socket.socket = sock
        self.sock.settimeout(20)
        self.buf = b""

    @classmethod
    def connect(cls, port: int, *, tls: ssl.SSLContext | None = None) -> Wire:
        import socket

        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        return cls(sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; got so far: " + repr(self.buf[-300:]))
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def until(self, tag: bytes) -> bytes:
        """Everything up to and including the tagged status line of ``tag``."""
        import re

        pattern = re.compile(rb"(?:^|\n)" + re.escape(tag) + rb" (?:OK|NO|BAD)[^\r\n]*\r\n")
        start = 0
        while True:
            m = pattern.search(self.buf, start)
            if m is not None:
                out, self.buf = self.buf[: m.end()], self.buf[m.end() :]
                return out
            start = max(0, self.buf.rfind(b"\n"))
            self._fill()

    def cmd(self, tag: bytes, text: bytes) -> bytes:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(20)

    def lines_in_background(self, count: int) -> Callable[[], list[tuple[bytes, float]]]:
        """Read ``count`` lines on a thread, each stamped with ``time.monotonic()`` as it
        arrives (so a latency is measured from the event, not from when the test gets to
        read). Returns a function that waits for them (with a deadline); the wire must not
        be used meanwhile."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wire-reader")

        def read() -> list[tuple[bytes, float]]:
            out = []
            for _ in range(count):
                line = self.line()
                out.append((line, time.monotonic()))
            return out

        future = pool.submit(read)
        pool.shutdown(wait=False)
        return lambda: future.result(timeout=20)

    def closed(self) -> bool:
        """Whether the server closed the connection (after what is buffered)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (OSError, ssl.SSLError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
