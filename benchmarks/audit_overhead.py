"""Issue 4 benchmark: what the audit journal costs SMTP submission.

Two Caducée instances side by side, identical but for ``[audit] enabled`` (off / on),
receive the same messages from the same load generator (STARTTLS + AUTH PLAIN, 20
clients); rounds alternate between them and the medians are compared. Target: the
journal costs at most 5 % of the throughput.

    .venv/bin/python -m benchmarks.audit_overhead [--count 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from statistics import median

from rich.console import Console
from rich.table import Table

from benchmarks.peers.caducee import Caducee
from benchmarks.submission import Target, run_one

console = Console(width=None if sys.stdout.isatty() else 120)


def set_audit_enabled(cad: Caducee, enabled: bool) -> None:
    text = cad.config_file.read_text()
    value = "true" if enabled else "false"
    text, n = re.subn(r"(?m)^\[audit\]\n", f"[audit]\nenabled = {value}\n", text, count=1)
    if n != 1:
        raise RuntimeError("no [audit] section in the generated configuration")
    cad.config_file.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="submission throughput, journal off vs on")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    rates: dict[str, list[float]] = {"journal off": [], "journal on": []}
    only = ["--services", "submission"]
    with Caducee(["sender", "rcpt"], run_args=only) as off, \
            Caducee(["sender", "rcpt"], run_args=only) as on:
        for cad, enabled in ((off, False), (on, True)):
            cad.stop()
            set_audit_enabled(cad, enabled)
            cad.start()
        targets = []
        for name, cad in (("journal off", off), ("journal on", on)):
            s, r = cad.address("sender"), cad.address("rcpt")
            targets.append(Target(name, cad.submission_port, cad.ca_file, s, cad.password(s),
                                  r, cad.count_messages, cad.processes))
        for rnd in range(args.rounds):
            for t in targets if rnd % 2 == 0 else list(reversed(targets)):
                res = run_one(t, args.count, args.size, args.concurrency, seed=rnd + 1)
                rates[t.name].append(res.accept_rate)
                console.print(f"  round {rnd + 1} {t.name}: {res.accept_rate:,.0f} msg/s")
        entries = on.count_rows("audit_entry")
        off_entries = off.count_rows("audit_entry")

    table = Table(title="Submission with the audit journal off and on (median msg/s)")
    table.add_column("journal off", justify="right")
    table.add_column("journal on", justify="right")
    table.add_column("cost", justify="right")
    a, b = median(rates["journal off"]), median(rates["journal on"])
    cost = (a - b) / a * 100
    table.add_row(f"{a:,.0f}", f"{b:,.0f}", f"{cost:+.1f} %")
    console.print(table)
    console.print(f"journal entries written: on {entries:,}, off {off_entries:,}; "
                  f"target: cost ≤ 5 % — {'met' if cost <= 5 else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
