"""IMAP benchmark: Caducée against Dovecot on the same 10,000 messages (issue 5).

Both hold the same corpus (:mod:`benchmarks.mime_corpus`: text, HTML alternatives, PDF
attachments, forwarded messages; same flags and internal dates) in one INBOX — Dovecot
as a Maildir written directly and indexed, Caducée through IMAP APPEND. Over STARTTLS
with the same client, after one warm-up round, we time:

(a) ``SELECT INBOX`` + ``FETCH 1:* (FLAGS UID ENVELOPE)``,
(b) ``UID FETCH <1,000 messages> (BODY[])`` (the same 1,000 messages on both sides),
(c) ``SEARCH TEXT <word>`` over all messages (its answer is known and checked),
(d) the server's memory with 1,000 connections logged in, INBOX selected, in IDLE
    (Dovecot: sum of the PSS of all its processes; Caducée: its process, RSS and PSS).

    .venv/bin/python -m benchmarks.imap                   # starts Dovecot and Caducée
    .venv/bin/python -m benchmarks.imap --only dovecot --count 2000
    .venv/bin/python -m benchmarks.imap --caducee 127.0.0.1:10143 --user a@x --password pw \\
        --cafile demo-data/tls/ca.crt --pid 1234          # an already running Caducée
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.imap_wire import ImapClient, open_logged_in
from benchmarks.mime_corpus import SEARCH_TERM, CorpusMessage, cached_corpus, expected_matches
from benchmarks.peers import processes
from benchmarks.peers.caducee import Caducee
from benchmarks.peers.dovecot_imap import DovecotImap, MaildirMessage
from benchmarks.peers.tls import key_type_of
from benchmarks.smtp_load import client_context, raise_nofile

MiB = 1024 * 1024
# Wide tables when the output goes to a file or a pipe (CI logs).
console = Console(width=None if sys.stdout.isatty() else 120)

_UID = re.compile(rb"\bUID (\d+)")
_MSGID = re.compile(rb"(?im)^Message-ID:\s*(<[^>\r\n]+>)")


@dataclass
class Side:
    name: str
    port: int
    user: str
    password: str
    cafile: Path | None
    procs: Callable[[], list[psutil.Process]]
    #: Measured figures: operation → seconds (list over rounds) or bytes.
    times: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def imap_date(m: CorpusMessage) -> str:
    return m.internal_date.strftime("%d-%b-%Y %H:%M:%S +0000")


def uid_set(uids: list[int]) -> str:
    """``1:3,7,9:10`` from a list of UIDs (RFC 9051 §9 sequence-set)."""
    out: list[str] = []
    s = sorted(uids)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}:{s[j]}")
        i = j + 1
    return ",".join(out)


async def append_all(side: Side, corpus: list[CorpusMessage], concurrency: int) -> float:
    """APPEND the corpus over ``concurrency`` connections; return the seconds taken."""
    ctx = client_context(side.cafile)
    queue = iter(corpus)

    async def worker() -> None:
        c = await open_logged_in("127.0.0.1", side.port, side.user, side.password, ctx)
        try:
            for m in queue:
                await c.append("INBOX", m.raw, " ".join(m.flags), imap_date(m))
        finally:
            await c.logout()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def uid_map(c: ImapClient) -> dict[str, int]:
    """Message-ID → UID of every message in the selected mailbox."""
    resp = await c.check(b"FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out: dict[str, int] = {}
    for chunk in resp.untagged:
        u, m = _UID.search(chunk), _MSGID.search(chunk)
        if u and m:
            out[m.group(1).decode()] = int(u.group(1))
    return out


async def measure_ops(side: Side, corpus: list[CorpusMessage], sample: list[int],
                      rounds: int) -> None:
    ctx = client_context(side.cafile)
    c = await open_logged_in("127.0.0.1", side.port, side.user, side.password, ctx)
    try:
        sel = await c.check(b"SELECT INBOX")
        exists = next((int(u.split()[1]) for u in sel.untagged if u.endswith(b"EXISTS\r\n")), 0)
        if exists != len(corpus):
            side.notes.append(f"INBOX holds {exists} messages, expected {len(corpus)}")
        ids = await uid_map(c)
        uids = [ids[corpus[i].message_id] for i in sample if corpus[i].message_id in ids]
        if len(uids) != len(sample):
            side.notes.append(f"only {len(uids)} of the {len(sample)} sampled messages found")
        body_cmd = f"UID FETCH {uid_set(uids)} (BODY[])".encode()
        search_cmd = f"SEARCH TEXT {SEARCH_TERM}".encode()
        want_hits = expected_matches(len(corpus))
        for rnd in range(rounds + 1):  # round 0 warms both servers up
            t0 = time.perf_counter()
            await c.check(b"SELECT INBOX")
            r = await c.check(b"FETCH 1:* (FLAGS UID ENVELOPE)")
            t_a = time.perf_counter() - t0
            if r.count(b"* ") < exists:
                side.notes.append(f"FETCH ENVELOPE returned {r.count(b'* ')} responses")

            t0 = time.perf_counter()
            r = await c.check(body_cmd)
            t_b = time.perf_counter() - t0
            if rnd == 0 and r.count(b"* ") < len(uids):
                side.notes.append(f"FETCH BODY[] returned {r.count(b'* ')} of {len(uids)}")

            t0 = time.perf_counter()
            r = await c.check(search_cmd)
            t_c = time.perf_counter() - t0
            hits = sum(len(u.split()) - 2 for u in r.untagged if u.startswith(b"* SEARCH"))
            if rnd == 0 and hits != want_hits:
                side.notes.append(f"SEARCH TEXT found {hits}, expected {want_hits}")
            if rnd:
                for op, t in (("a", t_a), ("b", t_b), ("c", t_c)):
                    side.times.setdefault(op, []).append(t)
    finally:
        await c.logout()


async def measure_idle(side: Side, n: int, batch: int = 25) -> None:
    """Memory before and with ``n`` connections logged in, INBOX selected, in IDLE."""
    ctx = client_context(side.cafile)
    await asyncio.sleep(0.5)
    procs = side.procs()
    side.memory["rss_before"] = processes.rss_bytes(procs)
    side.memory["pss_before"] = processes.pss_bytes(procs)
    clients: list[tuple[ImapClient, bytes]] = []

    async def one() -> tuple[ImapClient, bytes]:
        c = await open_logged_in("127.0.0.1", side.port, side.user, side.password, ctx)
        await c.check(b"SELECT INBOX")
        return c, await c.idle()

    try:
        for start in range(0, n, batch):
            clients += await asyncio.gather(*(one() for _ in range(min(batch, n - start))))
        await asyncio.sleep(1.0)  # let the server settle before sampling
        procs = side.procs()
        side.memory["rss_idle"] = processes.rss_bytes(procs)
        side.memory["pss_idle"] = processes.pss_bytes(procs)
        side.memory["processes"] = len(procs)
    finally:
        async def close(c: ImapClient, tag: bytes) -> None:
            with suppress(OSError, ConnectionError, TimeoutError):
                await asyncio.wait_for(c.done(tag), 10)
            await c.logout()

        await asyncio.gather(*(close(c, t) for c, t in clients), return_exceptions=True)


# -- report ------------------------------------------------------------------------------


def _med(xs: list[float] | None) -> float | None:
    return statistics.median(xs) if xs else None


#: Issue 5's targets: each operation at least as fast as Dovecot; idle connections cheap.
TARGET_SPEED_RATIO = 1.0
TARGET_IDLE_MIB_PER_1000 = 20.0
_OPS = (("a", "(a) SELECT + FETCH ENVELOPE"), ("b", "(b) FETCH BODY[]"), ("c", "(c) SEARCH TEXT"))


def verdicts(dov: Side | None, cad: Side | None, idle: int) -> list[str]:
    """One line per target: the figure, the target, met or missed (or why not judged)."""
    out: list[str] = []
    if cad is None:
        return out
    for op, label in _OPS:
        td, tc = _med(dov.times.get(op)) if dov else None, _med(cad.times.get(op))
        if td and tc:
            ratio = td / tc
            verdict = "met" if ratio >= TARGET_SPEED_RATIO else "MISSED"
            out.append(f"{label}: Caducée at {ratio:.2f}× Dovecot's speed "
                       f"(target ≥ {TARGET_SPEED_RATIO:.1f}×): {verdict}")
        else:
            out.append(f"{label}: not judged (no figure for both servers)")
    if idle and "rss_idle" in cad.memory:
        # The increase over no clients, scaled to 1,000 connections: the larger (stricter)
        # of the RSS and PSS increases of the one process.
        grown = max(cad.memory["rss_idle"] - cad.memory["rss_before"],
                    cad.memory["pss_idle"] - cad.memory["pss_before"])
        per_1000 = grown / MiB * 1000 / idle
        verdict = "met" if per_1000 <= TARGET_IDLE_MIB_PER_1000 else "MISSED"
        out.append(f"(d) idle connections: Caducée grows {per_1000:,.1f} MiB per 1,000 "
                   f"(target ≤ {TARGET_IDLE_MIB_PER_1000:.0f} MiB): {verdict}")
    elif idle:
        out.append("(d) idle connections: not judged (no memory figure for Caducée)")
    return out


def report(sides: list[Side], args: argparse.Namespace) -> None:
    dov = next((s for s in sides if s.name == "Dovecot"), None)
    cad = next((s for s in sides if s.name == "Caducée"), None)
    table = Table(title=f"IMAP, {args.count:,} messages (median of {args.rounds} rounds)")
    table.add_column("")
    for s in sides:
        table.add_column(s.name, justify="right")
    if dov and cad:
        table.add_column("Caducée speed ÷ Dovecot's", justify="right")
    rows = (
        ("a", "(a) SELECT + FETCH 1:* (FLAGS UID ENVELOPE)"),
        ("b", f"(b) FETCH BODY[] of {min(args.fetch, args.count):,} messages"),
        ("c", f"(c) SEARCH TEXT over {args.count:,}"),
    )
    for op, label in rows:
        cells = []
        for s in sides:
            t = _med(s.times.get(op))
            cells.append(f"{t * 1000:,.0f} ms" if t is not None else "—")
        if dov and cad:
            td, tc = _med(dov.times.get(op)), _med(cad.times.get(op))
            cells.append(f"{td / tc:.2f}×" if td and tc else "—")
        table.add_row(label, *cells)
    if args.idle:
        for key, label in (("pss", "PSS"), ("rss", "RSS")):
            cells = []
            for s in sides:
                if f"{key}_idle" in s.memory:
                    idle, before = s.memory[f"{key}_idle"], s.memory[f"{key}_before"]
                    cells.append(
                        f"{idle / MiB:,.1f} MiB (+{(idle - before) / MiB:,.1f})")
                else:
                    cells.append("—")
            if dov and cad:
                d, c = dov.memory.get(f"{key}_idle"), cad.memory.get(f"{key}_idle")
                cells.append(f"{c / d:.2f} of Dovecot's" if c and d else "—")
            table.add_row(f"(d) {label} with {args.idle:,} idle connections "
                          "(+ over no client)", *cells)
    console.print(table)
    for line in verdicts(dov, cad, args.idle):
        console.print(line)
    for s in sides:
        if "processes" in s.memory:
            console.print(f"{s.name}: {s.memory['processes']} processes with the idle clients")
        for note in s.notes:
            console.print(f"[yellow]{s.name}: {note}[/yellow]")


# -- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Caducée vs Dovecot IMAP")
    ap.add_argument("--count", type=int, default=10_000, help="messages in the INBOX")
    ap.add_argument("--fetch", type=int, default=1000, help="messages fetched in (b)")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections in (d); 0 skips")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--append-concurrency", type=int, default=4)
    ap.add_argument("--only", choices=["dovecot", "caducee"])
    ap.add_argument("--caducee", metavar="HOST:PORT", help="an already running Caducée (STARTTLS)")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--cafile", type=Path)
    ap.add_argument("--pid", type=int, help="PID of the running Caducée (for memory)")
    ap.add_argument("--no-import", action="store_true",
                    help="the running Caducée already holds the corpus")
    args = ap.parse_args(argv)
    raise_nofile(2 * args.idle + 4096)

    t0 = time.perf_counter()
    corpus = cached_corpus(args.count)
    total = sum(len(m.raw) for m in corpus)
    console.print(f"corpus: {len(corpus):,} messages, {total / 1e6:,.0f} MB "
                  f"({time.perf_counter() - t0:.0f}s to build or load)")
    sample = sorted(random.Random(1).sample(range(len(corpus)), min(args.fetch, len(corpus))))

    sides: list[Side] = []
    status = 0
    with ExitStack() as stack:
        key_type = "rsa2048"
        cad_side: Side | None = None
        if args.only != "dovecot":
            if args.caducee:
                host_port = args.caducee.rpartition(":")
                pid = args.pid
                cad_side = Side(
                    "Caducée", int(host_port[2]), args.user, args.password, args.cafile,
                    (lambda: processes.tree(pid)) if pid else list,
                )
            else:
                cad = Caducee(["reader"])
                cad.setup()
                stack.enter_context(cad)
                key_type = key_type_of(cad.cert_file)
                addr = cad.address("reader")
                cad_side = Side("Caducée", cad.imap_port, addr, cad.password(addr),
                                cad.ca_file, cad.processes)
            if cad_side is not None and not args.no_import:
                secs = asyncio.run(append_all(cad_side, corpus, args.append_concurrency))
                console.print(f"Caducée: APPENDed {len(corpus):,} messages in {secs:.0f}s "
                              f"({len(corpus) / secs:,.0f} msg/s, "
                              f"{args.append_concurrency} connections)")
        if args.only != "caducee":
            t0 = time.perf_counter()
            dov = stack.enter_context(DovecotImap(
                (MaildirMessage(m.raw, m.flags, m.internal_date) for m in corpus),
                "reader@bench.test", "pw-reader", key_type=key_type,
                max_connections=max(2000, args.idle + 100),
            ))
            console.print(f"Dovecot: Maildir written and indexed in "
                          f"{time.perf_counter() - t0:.0f}s")
            sides.append(Side("Dovecot", dov.imap_port, dov.address, dov.password,
                              dov.cert_file, dov.processes))
        if cad_side is not None:
            sides.append(cad_side)

        for side in sides:
            try:
                asyncio.run(measure_ops(side, corpus, sample, args.rounds))
                if args.idle:
                    asyncio.run(measure_idle(side, args.idle))
            except Exception as exc:  # report the other side anyway
                side.notes.append(f"failed: {type(exc).__name__}: {exc}")
                status = 1
            console.print(f"{side.name}: measured")
    report(sides, args)
    return status or int(any(s.notes for s in sides))


if __name__ == "__main__":
    sys.exit(main())
