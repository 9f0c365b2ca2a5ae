"""SMTP load generator: N messages from C concurrent clients, STARTTLS + AUTH PLAIN.

Raw asyncio streams (no SMTP library on the hot path, so the client costs the same
against every server). Each client opens one connection, does EHLO, STARTTLS
(RFC 3207), EHLO, AUTH PLAIN (RFC 4954) and then sends message after message on it,
pipelining MAIL/RCPT/DATA when the server advertises PIPELINING (RFC 2920 §3.1).
Measures the accepted rate (``250`` after the final dot) and, given a way to count what
the target stored, the end-to-end rate.

Standalone::

    .venv/bin/python -m benchmarks.smtp_load --port 10587 --user a@x.test --password pw \\
        --to b@x.test --count 5000 --size 4096 --concurrency 20 --cafile tls/ca.crt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

# ASCII only: a client that does not declare BODY=8BITMIME must not send 8-bit data.
WORDS = [
    "patient", "consultation", "ordonnance", "compte", "rendu", "examen", "biologie",
    "radiologie", "suivi", "traitement", "posologie", "allergie", "antecedents", "tension",
    "arterielle", "glycemie", "bilan", "hospitalisation", "sortie", "rendez-vous",
    "courrier", "confrere", "diagnostic", "imagerie",
]


# -- messages ----------------------------------------------------------------------------


def make_message(index: int, size: int, sender: str, recipient: str, seed: int = 1) -> bytes:
    """A plain-text message of exactly ``size`` bytes (CRLF line ends), deterministic."""
    rng = random.Random(seed * 1_000_003 + index)
    date = format_datetime(datetime.datetime(2024, 5, 1, 8, 0, tzinfo=datetime.UTC))
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\n"
        f"Subject: Benchmark message {index}\r\nDate: {date}\r\n"
        f"Message-ID: <bench-{seed}-{index}@bench.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    room = size - len(head)
    if room < 3:
        raise ValueError(f"size {size} is too small for the headers ({len(head)} bytes)")
    body = bytearray()
    while True:
        line = " ".join(rng.choice(WORDS) for _ in range(10)).encode() + b"\r\n"
        if len(body) + len(line) > room:
            break
        body += line
    rest = room - len(body)
    if rest >= 2:
        body += b"x" * (rest - 2) + b"\r\n"
    elif rest == 1:
        body[-2:-2] = b"x"
    return head + bytes(body)


def dot_stuff(message: bytes) -> bytes:
    """The DATA payload: transparency (RFC 5321 §4.5.2) and the end-of-data marker."""
    data = message.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


# -- the client --------------------------------------------------------------------------


class SmtpError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


class Client:
    """One SMTP connection (RFC 5321), just what the load needs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.extensions: set[str] = set()

    @classmethod
    async def connect(
        cls, host: str, port: int, *, implicit_tls: bool, ctx: ssl.SSLContext | None
    ) -> Client:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx if implicit_tls else None, limit=1 << 20
        )
        client = cls(reader, writer)
        await client.expect(220)
        return client

    async def reply(self) -> tuple[int, str]:
        """Read one reply, multi-line included (RFC 5321 §4.2.1)."""
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed by the server")
            lines.append(line[4:].decode(errors="replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    async def expect(self, code: int) -> str:
        got, text = await self.reply()
        if got != code:
            raise SmtpError(got, text)
        return text

    async def command(self, line: str, code: int) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.expect(code)

    async def ehlo(self) -> None:
        text = await self.command("EHLO load.bench.test", 250)
        self.extensions = {ln.split()[0].upper() for ln in text.splitlines()[1:] if ln}

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        await self.command("STARTTLS", 220)
        await self.writer.start_tls(ctx)

    async def auth_plain(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.command(f"AUTH PLAIN {token}", 235)

    async def send(self, sender: str, recipients: Sequence[str], payload: bytes) -> None:
        """One transaction; ``payload`` is already dot-stuffed and ends with ``.\\r\\n``."""
        cmds = [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
        if "PIPELINING" in self.extensions:
            self.writer.write("".join(c + "\r\n" for c in cmds).encode())
            replies = [await self.reply() for _ in cmds]
        else:
            replies = []
            for c in cmds:
                self.writer.write(c.encode() + b"\r\n")
                replies.append(await self.reply())
                if replies[-1][0] >= 400:
                    break
        for (code, text), want in zip(replies, [250] * (len(cmds) - 1) + [354], strict=False):
            if code != want:
                if replies[-1][0] == 354:  # the server took DATA anyway: abort it
                    self.writer.write(b".\r\n")
                    await self.reply()
                await self.command("RSET", 250)
                raise SmtpError(code, text)
        self.writer.write(payload)
        await self.expect(250)

    async def quit(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
        except (OSError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


def client_context(cafile: Path | None) -> ssl.SSLContext:
    """TLS 1.2+, the server checked against ``cafile`` (host name not checked: loopback)."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.check_hostname = False
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def open_session(
    host: str, port: int, user: str | None, password: str | None,
    ctx: ssl.SSLContext, *, implicit_tls: bool = False,
) -> Client:
    """Connect, greet, secure and (if ``user``) authenticate."""
    client = await Client.connect(host, port, implicit_tls=implicit_tls, ctx=ctx)
    await client.ehlo()
    if not implicit_tls:
        await client.starttls(ctx)
        await client.ehlo()
    if user is not None and password is not None:
        await client.auth_plain(user, password)
    return client


# -- the load ----------------------------------------------------------------------------


@dataclass
class LoadResult:
    attempted: int = 0
    accepted: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    #: From the first connection to the last ``250``.
    accept_seconds: float = 0.0
    #: From the first connection until the target reported everything stored.
    e2e_seconds: float | None = None
    latencies: list[float] = field(default_factory=list)
    #: CPU seconds the server spent (filled in by callers that can see its processes).
    server_cpu: float = 0.0

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.accept_seconds if self.accept_seconds else 0.0

    @property
    def e2e_rate(self) -> float | None:
        if self.e2e_seconds is None or not self.e2e_seconds:
            return None
        return self.accepted / self.e2e_seconds

    def latency_ms(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        s = sorted(self.latencies)
        return 1000 * s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class LoadSpec:
    host: str
    port: int
    user: str
    password: str
    sender: str
    recipients: list[str]
    messages: list[bytes]  # raw messages; sent in order, spread over the clients
    concurrency: int = 20
    cafile: Path | None = None
    implicit_tls: bool = False


async def run_load(
    spec: LoadSpec,
    stored: Callable[[], int] | None = None,
    e2e_timeout: float = 600.0,
) -> LoadResult:
    """Send every message; if ``stored`` is given, also wait until it reaches the count.

    ``stored()`` returns how many of these messages the target has stored so far (the
    caller subtracts any baseline).
    """
    ctx = client_context(spec.cafile)
    payloads = [dot_stuff(m) for m in spec.messages]
    next_index = 0
    result = LoadResult()
    last_accept = 0.0

    async def worker() -> None:
        nonlocal next_index, last_accept
        client = await open_session(
            spec.host, spec.port, spec.user, spec.password, ctx, implicit_tls=spec.implicit_tls
        )
        try:
            while next_index < len(payloads):
                i = next_index
                next_index += 1
                result.attempted += 1
                t0 = time.perf_counter()
                try:
                    await client.send(spec.sender, spec.recipients, payloads[i])
                except SmtpError as exc:
                    result.failures[f"{exc.code} {exc.text[:60]}"] += 1
                    continue
                now = time.perf_counter()
                result.latencies.append(now - t0)
                result.accepted += 1
                last_accept = now
        finally:
            await client.quit()

    start = time.perf_counter()
    outcomes = await asyncio.gather(
        *(worker() for _ in range(spec.concurrency)), return_exceptions=True
    )
    for o in outcomes:
        if isinstance(o, BaseException):
            result.failures[f"client died: {type(o).__name__}: {o}"[:100]] += 1
    result.accept_seconds = (last_accept or time.perf_counter()) - start
    if stored is not None and result.accepted:
        deadline = time.monotonic() + e2e_timeout
        while True:
            n = await asyncio.to_thread(stored)
            if n >= result.accepted:
                result.e2e_seconds = time.perf_counter() - start
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
    return result


async def open_idle(
    host: str, port: int, count: int, cafile: Path | None, *,
    user: str | None = None, password: str | None = None, batch: int = 50,
) -> list[Client]:
    """Open ``count`` connections left idle after EHLO + STARTTLS (+ AUTH if given)."""
    ctx = client_context(cafile)
    clients: list[Client] = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        clients += await asyncio.gather(
            *(open_session(host, port, user, password, ctx) for _ in range(n))
        )
    return clients


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.quit() for c in clients), return_exceptions=True)


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted``; return the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# -- CLI ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--from", dest="sender", help="envelope sender (default: --user)")
    ap.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--cafile", type=Path)
    ap.add_argument("--implicit-tls", action="store_true")
    args = ap.parse_args(argv)
    sender = args.sender or args.user
    msgs = [make_message(i, args.size, sender, args.to[0]) for i in range(args.count)]
    spec = LoadSpec(
        args.host, args.port, args.user, args.password, sender, args.to, msgs,
        args.concurrency, args.cafile, args.implicit_tls,
    )
    res = asyncio.run(run_load(spec))
    print(
        f"accepted {res.accepted}/{res.attempted} in {res.accept_seconds:.2f}s: "
        f"{res.accept_rate:.0f} msg/s; latency p50 {res.latency_ms(0.5):.1f} ms, "
        f"p99 {res.latency_ms(0.99):.1f} ms"
    )
    for reason, n in res.failures.most_common(5):
        print(f"  {n} × {reason}")
    return 0 if not res.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
