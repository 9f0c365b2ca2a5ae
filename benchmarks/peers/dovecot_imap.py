"""Dovecot alone as an IMAP server, one user whose INBOX Maildir is pre-filled.

The messages are written straight into ``Maildir/cur`` the way Dovecot's own delivery
leaves them (LF line ends, ``,S=<size>,W=<CRLF size>`` and the flags in the file name,
mtime = internal date), then ``doveadm index`` builds Dovecot's index so the benchmark
measures a mailbox in its steady state, not the first scan of a new Maildir.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks.peers.dovecot import Dovecot, DovecotUser

_MAILDIR_FLAGS = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Draft": "D",
                  "\\Deleted": "T"}


@dataclass(frozen=True)
class MaildirMessage:
    raw: bytes  # CRLF line ends, as over the wire
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_maildir(maildir: Path, messages: Iterable[MaildirMessage], uid: int, gid: int) -> int:
    """Write ``messages`` into ``maildir`` (created); return how many were written."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    count = 0
    host = "bench"
    for i, m in enumerate(messages):
        data = m.raw.replace(b"\r\n", b"\n")
        flags = "".join(sorted(_MAILDIR_FLAGS[f] for f in m.flags if f in _MAILDIR_FLAGS))
        when = (m.internal_date or datetime.datetime.now(datetime.UTC)).timestamp()
        name = f"{int(when)}.M{i}P{os.getpid()}.{host},S={len(data)},W={len(m.raw)}:2,{flags}"
        path = maildir / "cur" / name
        path.write_bytes(data)
        os.utime(path, (when, when))
        os.chown(path, uid, gid)
        count += 1
    for dirpath, _dirs, _files in os.walk(maildir.parent):
        os.chown(dirpath, uid, gid)
    return count


class DovecotImap:
    """``with DovecotImap(messages, "bench@bench.test", "pw") as d:`` → IMAP on d.imap_port."""

    def __init__(
        self,
        messages: Iterable[MaildirMessage],
        address: str,
        password: str,
        *,
        imap_port: int | None = None,
        max_connections: int = 2000,
        key_type: str = "rsa2048",
    ) -> None:
        self.address, self.password = address, password
        self.messages = messages
        self.dovecot = Dovecot(
            [DovecotUser(address, password)], imap_port or free_port(),
            max_connections=max_connections, key_type=key_type,
        )
        self.count = 0

    @property
    def imap_port(self) -> int:
        return self.dovecot.imap_port

    @property
    def cert_file(self) -> Path:
        return self.dovecot.cert_file

    def processes(self) -> list[psutil.Process]:
        return self.dovecot.processes()

    def start(self) -> None:
        self.dovecot.write_config()
        uid, gid = self.dovecot.mail_owner()
        self.count = write_maildir(self.dovecot.maildir(self.address), self.messages, uid, gid)
        self.dovecot.start()
        self.index()

    def index(self) -> None:
        """Build Dovecot's index and cache for INBOX (``doveadm index``)."""
        out = subprocess.run(
            ["doveadm", "-c", str(self.dovecot.config_file), "index", "-u", self.address,
             "INBOX"],
            capture_output=True, text=True, timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"doveadm index failed: {out.stderr.strip()}")

    def stop(self) -> None:
        self.dovecot.stop()

    def __enter__(self) -> DovecotImap:
        try:
            self.start()
        except BaseException:
            self.stop()
            self.dovecot.cleanup()
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
            self.dovecot.cleanup()
