"""Submission benchmark: Caducée against Postfix → LMTP → Dovecot (issue 3).

Both run on loopback, side by side, with the same protocol features (STARTTLS + AUTH
PLAIN, the sender bound to the login), default durability (fsync before ``250``) and the
same delivery target (one mailbox). The same messages go from the same concurrent
clients to each; we time the ``250``s (accepted) and the moment everything is stored
(end to end: Dovecot's Maildir file count, Caducée's ``message`` rows). Then 1,000 idle
SMTP connections are opened to Caducée and its resident memory is printed.

    .venv/bin/python -m benchmarks.submission                 # 5,000 × 4 KiB, 20 clients
    .venv/bin/python -m benchmarks.submission --count 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.peers import processes
from benchmarks.peers.caducee import Caducee
from benchmarks.peers.postfix_dovecot import DovecotUser, PostfixDovecot
from benchmarks.peers.tls import key_type_of
from benchmarks.smtp_load import (
    LoadResult,
    LoadSpec,
    close_all,
    make_message,
    open_idle,
    raise_nofile,
    run_load,
)

MiB = 1024 * 1024
# Wide tables when the output goes to a file or a pipe (CI logs).
console = Console(width=None if sys.stdout.isatty() else 120)


@dataclass
class Target:
    name: str
    port: int
    cafile: Path
    user: str
    password: str
    recipient: str
    stored: Callable[[], int]
    #: The server's processes (for CPU time).
    procs: Callable[[], list[psutil.Process]]


def run_one(target: Target, count: int, size: int, concurrency: int, seed: int) -> LoadResult:
    msgs = [make_message(i, size, target.user, target.recipient, seed) for i in range(count)]
    base = target.stored()
    spec = LoadSpec(
        "127.0.0.1", target.port, target.user, target.password, target.user,
        [target.recipient], msgs, concurrency, target.cafile,
    )
    cpu_before = processes.cpu_seconds(target.procs())
    result = asyncio.run(run_load(spec, stored=lambda: target.stored() - base))
    cpu = processes.cpu_seconds(target.procs())
    result.server_cpu = sum(cpu.values()) - sum(
        cpu_before.get(pid, 0.0) for pid in cpu
    )
    if result.failures:
        for reason, n in result.failures.most_common(5):
            console.print(f"  [red]{target.name}: {n} × {reason}[/red]")
    if result.e2e_seconds is None:
        console.print(f"  [red]{target.name}: not everything was stored in time[/red]")
    return result


def idle_memory(caducee: Caducee, n: int) -> tuple[int, int]:
    """Caducée's RSS before and with ``n`` idle connections (EHLO + STARTTLS done)."""
    before = processes.rss_bytes(caducee.processes())

    async def hold() -> int:
        clients = await open_idle("127.0.0.1", caducee.submission_port, n, caducee.ca_file)
        try:
            await asyncio.sleep(1.0)  # let the server settle (buffers, GC) before sampling
            return processes.rss_bytes(caducee.processes())
        finally:
            await close_all(clients)

    return before, asyncio.run(hold())


def fmt_rate(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:,.0f}"
    return f"{statistics.median(vals):,.0f} (min {min(vals):,.0f}, max {max(vals):,.0f})"


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Caducée vs Postfix→LMTP→Dovecot submission")
    ap.add_argument("--count", type=int, default=5000, help="messages per run")
    ap.add_argument("--size", type=int, default=4096, help="bytes per message")
    ap.add_argument("--concurrency", type=int, default=20, help="concurrent clients")
    ap.add_argument("--rounds", type=int, default=1, help="runs per target (median shown)")
    ap.add_argument("--idle", type=int, default=1000, help="idle SMTP connections (0: skip)")
    ap.add_argument("--database-url", default="", help="Caducée database (default SQLite)")
    ap.add_argument("--only", choices=["caducee", "postfix"], help="run one side only")
    args = ap.parse_args(argv)
    raise_nofile(args.idle + 4096)

    results: dict[str, list[LoadResult]] = {"Postfix→Dovecot": [], "Caducée": []}
    idle: tuple[int, int] | None = None
    with Caducee(["sender", "rcpt"], database_url=args.database_url) as cad:
        key_type = key_type_of(cad.cert_file)
        with PostfixDovecot(
            [DovecotUser("sender@bench.test", "pw-sender"),
             DovecotUser("rcpt@bench.test", "pw-rcpt")],
            key_type=key_type,
        ) as peer:
            targets = []
            if args.only != "caducee":
                targets.append(Target(
                    "Postfix→Dovecot", peer.smtp_port, peer.postfix.cert_file,
                    "sender@bench.test", "pw-sender", "rcpt@bench.test",
                    lambda: peer.count_messages("rcpt@bench.test"), peer.processes,
                ))
            if args.only != "postfix":
                s, r = cad.address("sender"), cad.address("rcpt")
                targets.append(Target(
                    "Caducée", cad.submission_port, cad.ca_file, s, cad.password(s), r,
                    cad.count_messages, cad.processes,
                ))
            console.print(
                f"{args.count:,} messages of {args.size:,} bytes, {args.concurrency} clients, "
                f"STARTTLS + AUTH PLAIN, TLS key {key_type}, {args.rounds} round(s)"
            )
            for rnd in range(args.rounds):
                for t in targets:
                    t0 = time.perf_counter()
                    res = run_one(t, args.count, args.size, args.concurrency, seed=rnd + 1)
                    results[t.name].append(res)
                    console.print(
                        f"  round {rnd + 1} {t.name}: {res.accepted:,} accepted, "
                        f"{res.accept_rate:,.0f} msg/s accepted, "
                        f"{(res.e2e_rate or 0):,.0f} msg/s stored "
                        f"({time.perf_counter() - t0:.1f}s)"
                    )
        if args.idle and args.only != "postfix":
            idle = idle_memory(cad, args.idle)
    node_idle: tuple[int, int] | None = None
    if args.idle and args.only != "postfix":
        # The same load, then the same idle connections, on a node that runs only the
        # submission service (`caducee run --services submission`, how Caducée scales out).
        with Caducee(["sender", "rcpt"], run_args=["--services", "submission"]) as node:
            s, r = node.address("sender"), node.address("rcpt")
            run_one(Target("Caducée submission node", node.submission_port, node.ca_file, s,
                           node.password(s), r, node.count_messages, node.processes),
                    args.count, args.size, args.concurrency, seed=1)
            node_idle = idle_memory(node, args.idle)

    table = Table(title="Submission: messages/s (median of rounds)")
    table.add_column("")
    for name in results:
        table.add_column(name, justify="right")
    table.add_column("ratio Caducée/Postfix", justify="right")
    pf, cd = results["Postfix→Dovecot"], results["Caducée"]
    for label, get in (
        ("accepted (250 after DATA)", lambda r: r.accept_rate),
        ("stored end to end", lambda r: r.e2e_rate),
    ):
        a, b = median([get(r) for r in pf]), median([get(r) for r in cd])
        ratio = f"{b / a:.2f}" if a and b else "—"
        table.add_row(label, fmt_rate([get(r) for r in pf]), fmt_rate([get(r) for r in cd]), ratio)
    table.add_row(
        "latency p50 / p99 (ms)",
        *(
            f"{median([r.latency_ms(0.5) for r in rs]) or 0:.0f} / "
            f"{median([r.latency_ms(0.99) for r in rs]) or 0:.0f}" if rs else "—"
            for rs in (pf, cd)
        ),
        "",
    )
    table.add_row(
        "server CPU ms per message",
        *(
            f"{median([r.server_cpu * 1000 / r.accepted for r in rs if r.accepted]) or 0:.1f}"
            if rs else "—"
            for rs in (pf, cd)
        ),
        "",
    )
    console.print(table)
    console.print(
        "(server CPU: user + system time of the server's processes alive at the end of a run; "
        "Postfix/Dovecot helpers that exited during the run are missed)"
    )
    for label, measured in (("all services in one process", idle),
                            ("submission node", node_idle)):
        if measured is None:
            continue
        before, with_idle = measured
        verdict = "[green]OK[/green]" if with_idle < 100 * MiB else "[red]over target[/red]"
        console.print(
            f"Caducée RSS ({label}, after the load): {before / MiB:.1f} MiB idle, "
            f"{with_idle / MiB:.1f} MiB with {args.idle:,} idle SMTP connections "
            f"(+{(with_idle - before) / MiB:.1f} MiB); target < 100 MiB: {verdict}"
        )
    failed = any(r.failures or r.e2e_seconds is None for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
