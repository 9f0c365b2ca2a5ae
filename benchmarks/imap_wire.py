"""A minimal asyncio IMAP client for benchmarks: the same cheap client for every server.

It frames responses (lines and ``{n}`` literals, RFC 9051 §4.3) but does not parse
them, so a big ``FETCH`` costs the client little and the timing is the server's.
STARTTLS (RFC 9051 §6.2.1), LOGIN, SELECT, APPEND with LITERAL+ (RFC 7888) when
the server offers it, IDLE (RFC 2177).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass, field

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapError(Exception):
    pass


@dataclass
class Response:
    """The untagged responses (each a bytes chunk, literals inlined) and the tagged one."""

    untagged: list[bytes] = field(default_factory=list)
    status: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status.split(b" ", 2)[1:2] == [b"OK"]

    def count(self, prefix: bytes) -> int:
        return sum(1 for u in self.untagged if u.startswith(prefix))

    @property
    def size(self) -> int:
        return sum(len(u) for u in self.untagged)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._tag = 0
        self.capabilities: set[str] = set()

    @classmethod
    async def connect(
        cls, host: str, port: int, ctx: ssl.SSLContext, *, implicit_tls: bool = False
    ) -> ImapClient:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx if implicit_tls else None, limit=1 << 22
        )
        client = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"unexpected greeting {greeting[:100]!r}")
        if not implicit_tls:
            await client.check(b"STARTTLS")
            await writer.start_tls(ctx)
        return client

    async def _chunk(self) -> bytes:
        """One response line with its literals inlined."""
        parts = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed by the server")
            parts.append(line)
            m = _LITERAL.search(line)
            if not m:
                return b"".join(parts)
            parts.append(await self.reader.readexactly(int(m.group(1))))

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"B%d" % self._tag

    async def command(self, line: bytes) -> Response:
        tag = self._next_tag()
        self.writer.write(tag + b" " + line + b"\r\n")
        return await self._collect(tag)

    async def _collect(self, tag: bytes) -> Response:
        resp = Response()
        while True:
            chunk = await self._chunk()
            if chunk.startswith(tag + b" "):
                resp.status = chunk.rstrip(b"\r\n")
                return resp
            if chunk.startswith(b"* CAPABILITY "):
                self.capabilities = set(chunk[13:].decode().upper().split())
            resp.untagged.append(chunk)

    async def check(self, line: bytes) -> Response:
        resp = await self.command(line)
        if not resp.ok:
            raise ImapError(f"{line[:60]!r} → {resp.status[:200]!r}")
        return resp

    async def login(self, user: str, password: str) -> None:
        resp = await self.check(f"LOGIN {quote(user)} {quote(password)}".encode())
        if b"[CAPABILITY " in resp.status:
            caps = resp.status.split(b"[CAPABILITY ", 1)[1].split(b"]", 1)[0]
            self.capabilities = set(caps.decode().upper().split())
        else:
            await self.check(b"CAPABILITY")

    async def append(
        self, mailbox: str, message: bytes, flags: str = "", date: str | None = None
    ) -> Response:
        tag = self._next_tag()
        head = tag + f" APPEND {quote(mailbox)}".encode()
        if flags:
            head += f" ({flags})".encode()
        if date:
            head += f' "{date}"'.encode()
        if "LITERAL+" in self.capabilities:
            self.writer.write(head + b" {%d+}\r\n" % len(message) + message + b"\r\n")
        else:
            self.writer.write(head + b" {%d}\r\n" % len(message))
            cont = await self._chunk()
            if not cont.startswith(b"+"):
                raise ImapError(f"APPEND refused: {cont[:200]!r}")
            self.writer.write(message + b"\r\n")
        resp = await self._collect(tag)
        if not resp.ok:
            raise ImapError(f"APPEND → {resp.status[:200]!r}")
        return resp

    async def idle(self) -> bytes:
        """Start IDLE; return the tag to use with :meth:`done`."""
        tag = self._next_tag()
        self.writer.write(tag + b" IDLE\r\n")
        cont = await self._chunk()
        if not cont.startswith(b"+"):
            raise ImapError(f"IDLE refused: {cont[:200]!r}")
        return tag

    async def done(self, tag: bytes) -> Response:
        self.writer.write(b"DONE\r\n")
        return await self._collect(tag)

    async def logout(self) -> None:
        try:
            self.writer.write(b"Z LOGOUT\r\n")
            await asyncio.wait_for(self.reader.read(), 5)
        except (OSError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


async def open_logged_in(
    host: str, port: int, user: str, password: str, ctx: ssl.SSLContext
) -> ImapClient:
    client = await ImapClient.connect(host, port, ctx)
    await client.login(user, password)
    return client
