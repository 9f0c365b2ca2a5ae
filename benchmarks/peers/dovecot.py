"""A throw-away Dovecot instance: ``dovecot -c FILE`` in a temp dir, loopback only.

IMAP with STARTTLS on a given port, optionally LMTP and a SASL auth socket on unix
sockets (for Postfix), users in a passwd-file, one Maildir per user, default durability
(``mail_fsync = optimized``). As root, mail belongs to ``nobody`` and the login processes
run as Dovecot's usual ``dovenull``/``dovecot`` users; otherwise everything runs as the
current user (no chroot).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks.peers import processes
from benchmarks.peers.install import ensure_packages
from benchmarks.peers.tls import write_self_signed

DOVECOT = "dovecot"
DH_FILE = Path("/usr/share/dovecot/dh.pem")


@dataclass
class DovecotUser:
    address: str  # user@domain: the login name
    password: str


@dataclass
class Dovecot:
    """Configure and run Dovecot; use as a context manager or call start()/stop()."""

    users: list[DovecotUser]
    imap_port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-dovecot-")))
    lmtp: bool = False
    #: Path of a SASL auth socket for Postfix (``smtpd_sasl_type = dovecot``), or None.
    auth_socket: Path | None = None
    #: How many concurrent IMAP connections the configuration allows.
    max_connections: int = 2000
    key_type: str = "rsa2048"

    # -- layout -------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / "etc" / "dovecot.conf"

    @property
    def base_dir(self) -> Path:
        return self.root / "run"

    @property
    def lmtp_socket(self) -> Path:
        return self.base_dir / "lmtp"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "dovecot.log"

    @property
    def cert_file(self) -> Path:
        return self.root / "tls" / "server.crt"

    def home(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.root / "mail" / domain / local

    def maildir(self, address: str) -> Path:
        return self.home(address) / "Maildir"

    def count_messages(self, address: str) -> int:
        """Messages stored in the user's INBOX (files in ``new/`` and ``cur/``)."""
        total = 0
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.maildir(address) / sub) as it:
                    total += sum(1 for _ in it)
            except FileNotFoundError:
                pass
        return total

    def mail_owner(self) -> tuple[int, int]:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid
        return os.getuid(), os.getgid()

    # -- configuration ------------------------------------------------------------------

    def write_config(self) -> None:
        for sub in ("etc", "run", "state", "log", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Login and mail processes run as other users: they must traverse the tree.
        self.root.chmod(0o755)
        uid, gid = self.mail_owner()
        os.chown(self.root / "mail", uid, gid)
        cert, key = write_self_signed(self.root / "tls", "dovecot.bench.test", self.key_type)
        users_file = self.root / "etc" / "users"
        users_file.write_text(
            "".join(f"{u.address}:{{PLAIN}}{u.password}::::::\n" for u in self.users)
        )
        users_file.chmod(0o644)  # read by the auth process (user "dovecot" as root)
        self.config_file.write_text(self._render(cert, key, uid, gid, users_file))

    def _render(self, cert: Path, key: Path, uid: int, gid: int, users_file: Path) -> str:
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.getuid()).pw_name
        protocols = "imap lmtp" if self.lmtp else "imap"
        n = self.max_connections
        lines = [
            "# Written by benchmarks/peers/dovecot.py: a throw-away loopback instance.",
            f"instance_name = bench-{hashlib.sha1(bytes(self.root)).hexdigest()[:10]}",
            f"base_dir = {self.base_dir}",
            f"state_dir = {self.root / 'state'}",
            f"log_path = {self.log_file}",
            f"protocols = {protocols}",
            "listen = 127.0.0.1",
            "ssl = yes",
            f"ssl_cert = <{cert}",
            f"ssl_key = <{key}",
            "ssl_min_protocol = TLSv1.2",
            *([f"ssl_dh = <{DH_FILE}"] if DH_FILE.exists() else []),
            "disable_plaintext_auth = yes",
            "auth_mechanisms = plain login",
            "mail_location = maildir:~/Maildir",
            f"first_valid_uid = {min(uid, 500)}",
            "first_valid_gid = 0",
            f"default_client_limit = {2 * n + 100}",
            "default_process_limit = 200",
            "default_vsz_limit = 1G",
            *([] if root else [
                f"default_login_user = {me}", f"default_internal_user = {me}",
                f"default_internal_group = {grp.getgrgid(os.getgid()).gr_name}",
            ]),
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {users_file}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={uid} gid={gid} home={self.root / 'mail'}/%d/%n",
            "}",
            "protocol imap {",
            f"  mail_max_userip_connections = {n + 100}",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.imap_port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
            # High-performance mode (one login process serves many clients; it also
            # proxies their TLS): Dovecot's recommended setting for many connections.
            "  service_count = 0",
            "  process_min_avail = 2",
            f"  client_limit = {n + 100}",
            *([] if root else ["  chroot ="]),
            "}",
            "service imap {",
            f"  process_limit = {n + 100}",
            "}",
            "service auth {",
            f"  client_limit = {n + 1000}",
            *(
                [f"  unix_listener {self._listener_path(self.auth_socket)} {{",
                 "    mode = 0666", "  }"]
                if self.auth_socket is not None
                else []
            ),
            "}",
            "service anvil {",
            f"  client_limit = {2 * n + 300}",
            *([] if root else ["  chroot ="]),
            "}",
        ]
        if self.lmtp:
            lines += [
                "service lmtp {",
                "  unix_listener lmtp {",
                "    mode = 0666",
                "  }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def _listener_path(self, path: Path) -> str:
        """Dovecot wants unix listeners under base_dir named relative to it."""
        if path.is_relative_to(self.base_dir):
            return str(path.relative_to(self.base_dir))
        return str(path)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        ensure_packages(DOVECOT, "dovecot-imapd", "dovecot-lmtpd")
        if shutil.which(DOVECOT) is None:
            raise RuntimeError("dovecot not found: install Debian's dovecot-imapd/dovecot-lmtpd")
        if not self.config_file.exists():
            self.write_config()
        # The daemon inherits our stdio: a pipe would never reach EOF, so use a file.
        startup_log = self.root / "log" / "startup.log"
        with startup_log.open("wb") as err:
            rc = subprocess.run(
                [DOVECOT, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            ).returncode
        if rc != 0:
            raise RuntimeError(
                f"dovecot failed to start: {startup_log.read_text(errors='replace').strip()}\n"
                + self.log_tail()
            )
        pid_file = self.base_dir / "master.pid"
        processes.wait_until(lambda: processes.read_pid(pid_file), timeout, "dovecot master.pid")
        processes.wait_until(self._listening, timeout, "dovecot to listen")

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.imap_port), timeout=0.5):
                pass
        except OSError:
            return False
        return not self.lmtp or self.lmtp_socket.exists()

    @property
    def master_pid(self) -> int | None:
        return processes.read_pid(self.base_dir / "master.pid")

    def processes(self) -> list[psutil.Process]:
        pid = self.master_pid
        return processes.tree(pid) if pid else []

    def stop(self) -> None:
        pid = self.master_pid
        if pid is not None:
            processes.terminate(pid, timeout=15.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dovecot log)"

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
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
