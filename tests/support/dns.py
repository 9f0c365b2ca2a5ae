"""A real DNS server (NSD, Debian's nsd) on loopback inside a private network and mount
namespace, so programs that use the system resolver (opendkim-testmsg) see our records
without touching the machine's /etc/resolv.conf."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path


def _txt(value: str) -> str:
    chunks = [value[i : i + 200] for i in range(0, len(value), 200)]
    return "( " + " ".join(f'"{c}"' for c in chunks) + " )"


def run_with_dns(
    zone: str, txt_records: dict[str, str], command: list[str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    """Serve ``txt_records`` (relative names) in ``zone`` and run ``command`` against it."""
    with tempfile.TemporaryDirectory(prefix="caducee-dns-") as tmp:
        return _run(Path(tmp), zone, txt_records, command, stdin)


def _run(
    work: Path, zone: str, txt_records: dict[str, str], command: list[str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    lines = [
        f"$ORIGIN {zone}.", "$TTL 60",
        f"@ IN SOA ns.{zone}. admin.{zone}. 1 60 60 60 60", "@ IN NS ns", "ns IN A 127.0.0.1",
    ]
    lines += [f"{name} IN TXT {_txt(value)}" for name, value in txt_records.items()]
    (work / "zone").write_text("\n".join(lines) + "\n")
    (work / "nsd.conf").write_text(f"""server:
  ip-address: 127.0.0.1
  port: 53
  username: ""
  zonesdir: "{work}"
  pidfile: "{work}/nsd.pid"
  database: ""
  xfrdfile: "{work}/xfrd.state"
  zonelistfile: "{work}/zone.list"
  chroot: ""
  logfile: "{work}/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: {zone}
  zonefile: {work}/zone
""")
    (work / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    (work / "input").write_bytes(stdin)
    script = (
        "set -e; ip link set lo up; "
        f"mount --bind {work}/resolv.conf /etc/resolv.conf; "
        f"nsd -c {work}/nsd.conf; "
        f"for i in $(seq 1 100); do [ -s {work}/nsd.pid ] && break; sleep 0.05; done; "
        f"set +e; {shlex.join(command)} < {work}/input; rc=$?; "
        f"kill $(cat {work}/nsd.pid) 2>/dev/null; exit $rc"
    )
    return subprocess.run(["unshare", "-mn", "sh", "-c", script], capture_output=True,
                          timeout=60)
