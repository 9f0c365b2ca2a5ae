"""A throw-away Postfix instance: ``postfix -c DIR start`` with its own configuration.

Its own ``main.cf``/``master.cf`` (every service with ``n`` in the chroot column), queue
and data directories in a temp dir, one SMTP listener on a loopback port with STARTTLS
required and SASL AUTH through Dovecot's auth socket, virtual mailboxes delivered over
LMTP. Default durability: Postfix fsyncs each queue file before ``250``. Postfix's master
must start as root (it drops to ``mail_owner = postfix`` itself).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks.peers import processes
from benchmarks.peers.install import ensure_packages
from benchmarks.peers.tls import write_self_signed

POSTFIX = "postfix"

# name type private unpriv chroot wakeup maxproc command (master(5)); chroot is "n" for all.
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
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Postfix:
    """Configure and run Postfix; use as a context manager or call start()/stop()."""

    smtp_port: int
    #: The virtual mail domain and the addresses Postfix accepts for it.
    domain: str
    recipients: list[str]
    #: Where to deliver: a Dovecot LMTP unix socket.
    lmtp_socket: Path
    #: Dovecot's SASL auth socket (``smtpd_sasl_type = dovecot``).
    sasl_socket: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-postfix-")))
    key_type: str = "rsa2048"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postfix.log"

    @property
    def cert_file(self) -> Path:
        return self.root / "tls" / "server.crt"

    def write_config(self) -> None:
        for sub in ("etc", "queue", "data", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        shutil.chown(self.root / "data", "postfix")
        cert, key = write_self_signed(self.root / "tls", f"postfix.{self.domain}", self.key_type)
        # Every recipient may be used as the envelope sender by the same login (the
        # equivalent of Caducée's "MAIL FROM must be owned by the authenticated account").
        senders = ", ".join(f"{a}={a}" for a in self.recipients)
        rcpts = ", ".join(f"{a}=ok" for a in self.recipients)
        main_cf = f"""\
# Written by benchmarks/peers/postfix.py: a throw-away loopback instance.
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.root / 'data'}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.log_file}
maillog_file_prefixes = {self.root}
myhostname = postfix.{self.domain}
mydomain = {self.domain}
myorigin = $myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
virtual_mailbox_domains = {self.domain}
virtual_mailbox_maps = inline:{{ {rcpts} }}
virtual_transport = lmtp:unix:{self.lmtp_socket}
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.sasl_socket}
smtpd_sender_login_maps = inline:{{ {senders} }}
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
"""
        master_cf = f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd\n" + _SERVICES
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(master_cf)

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Postfix's start script daemonises master: keep our pipes out of it.
        out_file = self.root / "log" / "postfix-command.log"
        with out_file.open("w") as out:
            rc = subprocess.run(
                [POSTFIX, "-c", str(self.config_dir), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            ).returncode
        return subprocess.CompletedProcess(args, rc, out_file.read_text(errors="replace"), "")

    def start(self, timeout: float = 30.0) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("a Postfix instance must be started as root")
        ensure_packages(POSTFIX, "postfix")
        if shutil.which(POSTFIX) is None:
            raise RuntimeError("postfix not found: install Debian's postfix package")
        self.write_config()
        result = self.postfix("start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix failed to start: {result.stdout}\n{self.log_tail()}")
        processes.wait_until(self._listening, timeout, "postfix to listen")

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.5) as s:
                s.settimeout(5)
                return s.recv(4).startswith(b"220")
        except OSError:
            return False

    @property
    def master_pid(self) -> int | None:
        return processes.read_pid(self.queue_dir / "pid" / "master.pid")

    def processes(self) -> list[psutil.Process]:
        pid = self.master_pid
        return processes.tree(pid) if pid else []

    def queue_size(self) -> int:
        """Messages still in the incoming, active or deferred queue."""
        total = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _dirpath, _dirs, files in os.walk(self.queue_dir / sub):
                total += len(files)
        return total

    def stop(self) -> None:
        procs = self.processes()
        if not procs:
            return
        self.postfix("stop")
        processes.stop_tree(procs, timeout=15.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no postfix log)"

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        try:
            self.start()
        except BaseException:
            self.stop()
            self.cleanup()
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
            self.cleanup()
