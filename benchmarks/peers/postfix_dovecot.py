"""Postfix → LMTP → Dovecot on loopback: the reference for the submission benchmark.

Postfix takes submissions (STARTTLS + AUTH PLAIN through Dovecot's auth socket, like
Caducée's submission port) and delivers each message over LMTP to Dovecot, which writes
it into the recipient's Maildir; :meth:`PostfixDovecot.count_messages` counts what is
stored. Usage::

    with PostfixDovecot([DovecotUser("bench@bench.test", "pw")]) as peer:
        ...  # SMTP on peer.smtp_port, IMAP on peer.imap_port
        peer.count_messages("bench@bench.test")
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks.peers.dovecot import Dovecot, DovecotUser
from benchmarks.peers.postfix import Postfix

__all__ = ["DovecotUser", "PostfixDovecot", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostfixDovecot:
    def __init__(
        self,
        users: list[DovecotUser],
        *,
        smtp_port: int | None = None,
        imap_port: int | None = None,
        key_type: str = "rsa2048",
    ) -> None:
        domains = {u.address.partition("@")[2] for u in users}
        if len(domains) != 1:
            raise ValueError("all users must share one domain")
        self.domain = domains.pop()
        self.root = Path(tempfile.mkdtemp(prefix="bench-postfix-dovecot-"))
        self.root.chmod(0o755)
        self.dovecot = Dovecot(
            users,
            imap_port or free_port(),
            root=self.root / "dovecot",
            lmtp=True,
            auth_socket=self.root / "dovecot" / "run" / "auth-postfix",
            key_type=key_type,
        )
        self.postfix = Postfix(
            smtp_port or free_port(),
            self.domain,
            [u.address for u in users],
            lmtp_socket=self.dovecot.lmtp_socket,
            sasl_socket=self.dovecot.auth_socket,  # type: ignore[arg-type]
            root=self.root / "postfix",
            key_type=key_type,
        )

    @property
    def smtp_port(self) -> int:
        return self.postfix.smtp_port

    @property
    def imap_port(self) -> int:
        return self.dovecot.imap_port

    def count_messages(self, address: str) -> int:
        return self.dovecot.count_messages(address)

    def processes(self) -> list[psutil.Process]:
        return self.postfix.processes() + self.dovecot.processes()

    def start(self) -> None:
        self.dovecot.start()
        self.postfix.start()

    def stop(self) -> None:
        try:
            self.postfix.stop()
        finally:
            self.dovecot.stop()

    def logs(self) -> str:
        return f"--- postfix\n{self.postfix.log_tail()}\n--- dovecot\n{self.dovecot.log_tail()}"

    def __enter__(self) -> PostfixDovecot:
        try:
            self.start()
        except BaseException:
            self.stop()
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
