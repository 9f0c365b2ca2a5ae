"""Caducée as a benchmark target, driven only through its command line.

``caducee init DIR`` writes the configuration, certificates and keys; the listen
addresses in ``DIR/caducee.toml`` are rewritten to free loopback ports; accounts come from
``caducee account add --password-stdin``, each referenced in the directory as an
organisation mailbox (``caducee directory add mailbox``) so that it may send;
``caducee -c DIR/caducee.toml run`` runs in the foreground until SIGTERM and logs a line
containing ``ready`` once it listens. Its server certificate is signed by
``DIR/tls/ca.crt``; stored messages are rows of the ``message`` table of its
``database.url``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks.peers import processes

#: The ``caducee`` console script of the running virtual environment.
CADUCEE = str(Path(sys.executable).with_name("caducee"))

_READY = re.compile(rb"\bready\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_listen(toml_text: str, section: str, key: str, addresses: list[str]) -> str:
    """Rewrite ``key = [...]`` in ``[section]`` (appending the key or section if missing)."""
    value = "[" + ", ".join(f'"{a}"' for a in addresses) + "]"
    lines = toml_text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"[{section}]"), None)
    if start is None:
        return toml_text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
        len(lines),
    )
    for i in range(start + 1, end):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def config_sections() -> set[str]:
    """The sections this Caducée's configuration knows."""
    from caducee.config import SECTION_TYPES

    return set(SECTION_TYPES)


def command_modules() -> tuple[str, ...]:
    from caducee.cli import COMMAND_MODULES

    return COMMAND_MODULES


@dataclass
class CaduceeAccount:
    address: str
    password: str


@dataclass
class Caducee:
    """Initialise, configure and run Caducée; use as a context manager."""

    #: Local parts to create in the first professional domain (addresses are returned by
    #: :meth:`address`); passwords are generated.
    local_parts: list[str]
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-caducee-")))
    hostname: str = "mail.caducee.test"
    database_url: str = ""
    submission_port: int = field(default_factory=free_port)
    submissions_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    #: Extra ``caducee run`` arguments (``--services ...``).
    run_args: list[str] = field(default_factory=list)
    domain: str = ""
    accounts: list[CaduceeAccount] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "caducee.toml"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.data_dir / "tls" / "server.crt"

    @property
    def log_file(self) -> Path:
        return self.root / "caducee.log"

    @property
    def has_imap(self) -> bool:
        return "imap" in config_sections()

    def address(self, local: str) -> str:
        return f"{local}@{self.domain}"

    def password(self, address: str) -> str:
        return next(a.password for a in self.accounts if a.address == address)

    # -- setup --------------------------------------------------------------------------

    def _cli(self, *args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run(
            [CADUCEE, *args], input=stdin, capture_output=True, timeout=300,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"caducee {' '.join(args[:3])} failed ({out.returncode}): "
                f"{out.stderr.decode(errors='replace').strip()[-2000:]}"
            )
        return out.stdout.decode(errors="replace")

    def setup(self) -> None:
        init = ["init", str(self.data_dir), "--hostname", self.hostname]
        if self.database_url:
            init += ["--database-url", self.database_url]
        self._cli(*init)
        text = self.config_file.read_text()
        text = set_listen(text, "submission", "listen", [f"127.0.0.1:{self.submission_port}"])
        text = set_listen(
            text, "submission", "implicit_tls_listen", [f"127.0.0.1:{self.submissions_port}"]
        )
        if self.has_imap:
            text = set_listen(text, "imap", "listen", [f"127.0.0.1:{self.imap_port}"])
            text = set_listen(
                text, "imap", "implicit_tls_listen", [f"127.0.0.1:{self.imaps_port}"]
            )
        # The other listeners too, so that several instances (and a demo) can run at once.
        for section in ("web", "mta"):
            if section in config_sections():
                text = set_listen(text, section, "listen", [f"127.0.0.1:{free_port()}"])
        self.config_file.write_text(text)
        cfg = tomllib.loads(text)
        self.domain = cfg["domains"]["professional"][0]
        self.database_url = self.database_url or str(cfg.get("database", {}).get("url", ""))
        has_directory = "caducee.cmd_directory" in command_modules()
        for local in self.local_parts:
            acc = CaduceeAccount(self.address(local), "bench-" + os.urandom(6).hex())
            self._cli(
                "-c", str(self.config_file), "account", "add", acc.address, "--password-stdin",
                stdin=acc.password.encode() + b"\n",
            )
            if has_directory:
                # Only senders referenced in the directory may submit (policy/senders.py).
                self._cli(
                    "-c", str(self.config_file), "directory", "add", "mailbox", acc.address,
                    "--type", "ORG", "--structure", "Caducée benchmark",
                )
            self.accounts.append(acc)

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'caducee.db'}"

    def count_messages(self) -> int:
        """Rows of the ``message`` table (every stored copy, all mailboxes)."""
        return self.count_rows("message")

    def count_rows(self, table: str) -> int:
        from sqlalchemy import text

        from mailstore.db import create_db_engine

        if not hasattr(self, "_engine"):
            self._engine = create_db_engine(self.db_url(), pool_size=1)
        with self._engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        if not self.config_file.exists():
            self.setup()
        log = self.log_file.open("wb")
        self._proc = subprocess.Popen(
            [CADUCEE, "-c", str(self.config_file), "run", *self.run_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _READY.search(self.log_file.read_bytes()):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"caducee run exited ({self._proc.returncode}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"caducee run not ready after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def processes(self) -> list[psutil.Process]:
        return processes.tree(self._proc.pid) if self._proc is not None else []

    def stop(self, timeout: float = 30.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            procs = self.processes()
            self._proc.send_signal(signal.SIGTERM)
            processes.stop_tree(procs, timeout)
            self._proc.wait()
        if hasattr(self, "_engine"):
            self._engine.dispose()
            del self._engine
        self._kill_gpg_agent()

    def _kill_gpg_agent(self) -> None:
        """``caducee init`` may leave a gpg-agent for its key ring: stop the one it left."""
        for home in self.data_dir.glob("keys/gnupg"):
            if shutil.which("gpgconf"):
                subprocess.run(
                    ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                    capture_output=True, timeout=30,
                )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no caducee log)"

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Caducee:
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
