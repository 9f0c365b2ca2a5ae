"""Real peers for the outbound queue and the MTA: a DNS server (NSD) on a loopback port and
a throw-away Postfix instance playing *the other operator* of the trust space.

* :class:`NsdServer` serves the zones we give it on ``127.0.0.1:<free port>`` (no
  namespace needed: our resolver is configured with that address and port).
* :class:`PostfixPeer` is ``postfix -c DIR`` with its own queue, on a loopback port: it is
  the MX of ``other-operator.test`` (virtual mailboxes in Maildirs, STARTTLS with a
  certificate of our test CA, client certificates asked for), and it relays everything
  else to our MTA with a verified STARTTLS session and its client certificate.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from benchmarks.peers import processes
from caducee import pki
from smtp_gateway.dkim_sign import DkimSigner
from smtp_gateway.mx import DnsSettings
from tests.support.net import free_port, wait_for
from tests.support.platform import DOMAIN, PlatformDir, configure, make_platform_dir

# -- DNS -----------------------------------------------------------------------------------


def txt_value(value: str) -> str:
    """A TXT rdata of one or more 200-octet strings."""
    chunks = [value[i : i + 200] for i in range(0, len(value), 200)]
    return "( " + " ".join(f'"{c}"' for c in chunks) + " )"


@dataclass
class NsdServer:
    """NSD in the foreground on 127.0.0.1:``port``, authoritative for ``zones``.

    ``zones`` maps a zone name to its records (one zone-file line each, names relative).
    """

    zones: dict[str, list[str]]
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="caducee-nsd-")))
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NsdServer:
        zone_conf = []
        for zone, records in self.zones.items():
            lines = [
                f"$ORIGIN {zone}.", "$TTL 60",
                f"@ IN SOA ns.{zone}. admin.{zone}. 1 60 60 60 60", "@ IN NS ns",
                "ns IN A 127.0.0.1", *records,
            ]
            (self.root / f"{zone}.zone").write_text("\n".join(lines) + "\n")
            zone_conf.append(f"zone:\n  name: {zone}\n  zonefile: {self.root}/{zone}.zone\n")
        (self.root / "nsd.conf").write_text(f"""server:
  ip-address: 127.0.0.1
  port: {self.port}
  do-ip6: no
  username: ""
  zonesdir: "{self.root}"
  pidfile: "{self.root}/nsd.pid"
  database: ""
  xfrdfile: "{self.root}/xfrd.state"
  zonelistfile: "{self.root}/zone.list"
  chroot: ""
  logfile: "{self.root}/nsd.log"
  server-count: 1
  verbosity: 0
remote-control:
  control-enable: no
""" + "".join(zone_conf))
        self.proc = subprocess.Popen(
            ["nsd", "-d", "-c", str(self.root / "nsd.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        first = next(iter(self.zones))
        wait_for(lambda: self._answers(first), 15, f"nsd on port {self.port}")
        return self

    def _answers(self, zone: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"nsd exited: {(self.root / 'nsd.log').read_text()[-500:]}")
        try:
            query = dns.message.make_query(zone, dns.rdatatype.SOA)
            reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return bool(reply.answer)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


# -- Postfix as the other operator -----------------------------------------------------------

# name type private unpriv chroot wakeup maxproc command (master(5)); no chroot anywhere.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class PostfixPeer:
    """Postfix for ``domain``: receives into Maildirs, relays the rest to ``relay_port``."""

    domain: str
    mailboxes: list[str]
    #: Our CA (cert and key): it issues Postfix's certificate and verifies ours.
    ca_cert: Path
    ca_key: Path
    #: Our MTA's port on localhost (Postfix's relayhost).
    relay_port: int
    smtp_port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="caducee-postfix-")))

    @property
    def hostname(self) -> str:
        return f"mx.{self.domain}"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postfix.log"

    def maildir(self, local_part: str) -> Path:
        return self.root / "mail" / local_part

    def write_config(self) -> None:
        for sub in ("etc", "queue", "data", "log", "mail", "tls"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            (self.root / sub).chmod(0o755)  # whatever the umask (caducee's CLI sets 077)
        self.root.chmod(0o755)
        shutil.chown(self.root / "data", "postfix")
        shutil.chown(self.root / "mail", "postfix", "postfix")
        ca = pki.load(self.ca_cert, self.ca_key)
        # One certificate for both roles (serverAuth + clientAuth), as between operators.
        issued = pki.issue_server(ca, [self.hostname])
        cert, key = self.root / "tls" / "peer.crt", self.root / "tls" / "peer.key"
        pki.write_cert(cert, issued.cert)
        pki.write_key(key, issued.key)
        uid, gid = _ids("postfix")
        boxes = ", ".join(f"{m}@{self.domain}={m}/" for m in self.mailboxes)
        main_cf = f"""\
# Written by tests/support/mail_peers.py: the other operator, on loopback.
compatibility_level = 3.6
queue_directory = {self.root / 'queue'}
data_directory = {self.root / 'data'}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.log_file}
maillog_file_prefixes = {self.root}
myhostname = {self.hostname}
mydomain = {self.domain}
myorigin = $mydomain
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
biff = no
delay_warning_time = 0
virtual_mailbox_domains = {self.domain}
virtual_mailbox_maps = inline:{{ {boxes} }}
virtual_mailbox_base = {self.root / 'mail'}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_transport = virtual
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_CAfile = {self.ca_cert}
smtpd_tls_ask_ccert = yes
smtpd_tls_received_header = yes
smtpd_tls_protocols = >=TLSv1.2
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [localhost]:{self.relay_port}
smtp_tls_security_level = verify
smtp_tls_CAfile = {self.ca_cert}
smtp_tls_cert_file = {cert}
smtp_tls_key_file = {key}
smtp_tls_protocols = >=TLSv1.2
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_loglevel = 1
maximal_backoff_time = 10s
minimal_backoff_time = 5s
queue_run_delay = 5s
"""
        master_cf = f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd\n" + _SERVICES
        for name, text in (("main.cf", main_cf), ("master.cf", master_cf)):
            (self.root / "etc" / name).write_text(text)
            (self.root / "etc" / name).chmod(0o644)
        (self.root / "tls" / "peer.crt").chmod(0o644)

    def _postfix(self, *args: str) -> int:
        out = self.root / "log" / "postfix-command.log"
        with out.open("a") as fh:  # the start script daemonises master: keep our pipes out
            return subprocess.run(["postfix", "-c", str(self.root / "etc"), *args],
                                  stdin=subprocess.DEVNULL, stdout=fh, stderr=fh).returncode

    def start(self) -> PostfixPeer:
        self.write_config()
        if self._postfix("start") != 0:
            raise RuntimeError(f"postfix failed to start: {self.log_tail()}")
        wait_for(self._listening, 30, "postfix to listen")
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.5) as s:
                s.settimeout(5)
                return s.recv(4).startswith(b"220")
        except OSError:
            return False

    def flush(self) -> None:
        """Retry the deferred queue now (``postqueue -f``)."""
        subprocess.run(["postqueue", "-c", str(self.root / "etc"), "-f"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def delivered(self, local_part: str) -> list[bytes]:
        """The messages in a Maildir's ``new/`` (oldest first)."""
        new = self.maildir(local_part) / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes() for p in files]

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        pid = processes.read_pid(self.root / "queue" / "pid" / "master.pid")
        if pid is not None:
            procs = processes.tree(pid)
            self._postfix("stop")
            processes.stop_tree(procs, timeout=15.0)
        shutil.rmtree(self.root, ignore_errors=True)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def wait_file_count(path: Path, count: int, timeout: float = 30.0) -> list[Path]:
    """Wait until ``path`` holds at least ``count`` files; return them."""
    def ready() -> list[Path] | None:
        files = list(path.iterdir()) if path.is_dir() else []
        return files if len(files) >= count else None

    return wait_for(ready, timeout, f"{count} file(s) in {path}")  # type: ignore[return-value]



# -- the whole scene: our platform, the other operator, a DNS --------------------------------

OTHER_DOMAIN = "other-operator.test"
PEER_SELECTOR = "peer"


@dataclass
class OperatorWorld:
    """Our platform directory, NSD with the zones, and Postfix as the other operator."""

    pdir: PlatformDir
    dns: NsdServer
    postfix: PostfixPeer
    #: Signs as the other operator (its key is published in NSD).
    peer_signer: DkimSigner

    def dns_settings(self) -> DnsSettings:
        return DnsSettings(("127.0.0.1",), self.dns.port, timeout=5.0)

    def stop(self) -> None:
        self.postfix.stop()
        self.dns.stop()


def build_world(
    root: Path, database_url: str = "", *, mailboxes: Sequence[str] = ("someone", "dr.peer"),
    outbound: dict[str, object] | None = None,
) -> OperatorWorld:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pdir = make_platform_dir(root, database_url)
    ours = DkimSigner.from_pem_file(pdir.root / "keys" / "dkim.key", DOMAIN, "caducee")
    peer = DkimSigner(OTHER_DOMAIN, PEER_SELECTOR,
                      rsa.generate_private_key(public_exponent=65537, key_size=2048))
    dns_server = NsdServer({
        OTHER_DOMAIN: ["@ IN MX 10 mx", "mx IN A 127.0.0.1",
                       f"{PEER_SELECTOR}._domainkey IN TXT {txt_value(peer.dns_record())}"],
        DOMAIN: [f"caducee._domainkey IN TXT {txt_value(ours.dns_record())}"],
        "nullmx.test": ["@ IN MX 0 ."],
    }).start()
    try:
        postfix = PostfixPeer(OTHER_DOMAIN, list(mailboxes), pdir.ca,
                              pdir.root / "tls" / "ca.key",
                              relay_port=pdir.ports["mta"]).start()
    except BaseException:
        dns_server.stop()
        raise
    configure(pdir, "outbound", dns_nameservers=["127.0.0.1"], dns_port=dns_server.port,
              smtp_port=postfix.smtp_port, connect_timeout=10.0, **(outbound or {}))
    pdir.trust(OTHER_DOMAIN)
    return OperatorWorld(pdir, dns_server, postfix, peer)
