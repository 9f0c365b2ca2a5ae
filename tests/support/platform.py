"""Start a whole Caducée platform for end-to-end tests: in-process (a thread with its own
event loop) or as a real `caducee run` subprocess that can be killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from caducee import config as config_mod
from caducee.context import Context, open_context
from caducee.runner import ALL_SERVICES, Platform, start_platform
from caducee.setup_files import PORTS, InitOptions, write_all
from directory import admin as directory_admin
from mailstore import accounts
from mailstore.policy_patients import activate_patient, add_patient
from mailstore.policy_trust import add_trusted
from policy.identifiers import luhn_check_digit
from tests.support.net import free_port, wait_for, wait_port

DOMAIN = "demo.mssante.fr"
PATIENT_DOMAIN = "patient.demo.mssante.fr"


@dataclass
class PlatformDir:
    """An initialised data directory with free ports."""

    root: Path
    config_path: Path
    ports: dict[str, int]

    @property
    def config(self) -> config_mod.Config:
        return config_mod.load(self.config_path)

    @property
    def ca(self) -> Path:
        return self.root / "tls" / "ca.crt"

    def client_tls(self) -> ssl.SSLContext:
        """A client's TLS context that trusts this platform's CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def operator_tls(self, names: list[str]) -> ssl.SSLContext:
        """:meth:`client_tls` presenting a certificate from this platform's CA for
        ``names``: another operator of the trust space, as the MTA listener requires."""
        from caducee import pki

        ctx = self.client_tls()
        issued = pki.issue_server(pki.load(self.ca, self.root / "tls" / "ca.key"), names)
        stem = self.root / "tls" / names[0].replace(".", "_")
        cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
        pki.write_cert(cert, issued.cert)
        pki.write_key(key, issued.key)
        ctx.load_cert_chain(cert, key)
        return ctx

    def context(self) -> Context:
        return open_context(self.config, readers=2)

    def add_account(
        self, address: str, password: str = "correct horse 1", *, referenced: bool = True,
        mailbox_type: str = "PER", profession: str = "10", **kw: object,
    ) -> str:
        """Create an account; ``referenced`` also lists its mailbox in the directory."""
        kind = str(kw.pop("kind", "professional"))
        national_id = str(kw.pop("rpps", "")) or new_national_id()
        ctx = self.context()
        try:
            def job(tx):
                accounts.create_account(
                    tx.conn, ctx.keystore, address=address, kind=kind, password=password,
                    rpps=national_id if kind == "professional" else None,
                    **kw,  # type: ignore[arg-type]
                )
                if referenced and kind in ("professional", "organisation"):
                    directory_admin.add_mailbox(
                        tx.conn, address=address, mailbox_type=mailbox_type,
                        national_id=national_id if mailbox_type == "PER" else None,
                        last_name=address.split("@")[0], profession=profession,
                        who=directory_admin.Who("test"),
                    )

            ctx.db.write_sync(job)
        finally:
            ctx.close()
        return password

    def trust(self, domain: str) -> None:
        """Add ``domain`` to the trusted list (a running platform's policy gate sees it
        after ``reload_trust``)."""
        ctx = self.context()
        try:
            ctx.db.write_sync(lambda tx: add_trusted(
                tx.conn, domain, added_by="test", at=datetime.now(UTC)))
        finally:
            ctx.close()

    def add_patient(self, ins: str, password: str = "patient-password-1") -> str:
        """Create the patient account ``<ins>@<patient domain>`` and activate it (as
        ``caducee patient add`` then ``patient activate`` do); return its address."""
        ctx = self.context()
        try:
            patient, code = ctx.db.write_sync(lambda tx: add_patient(
                tx.conn, ctx.keystore, ins=ins, patient_domain=PATIENT_DOMAIN,
                display_name="Jeanne Patiente", notification_email="jeanne@example.org",
                now=datetime.now(UTC)))
            ctx.db.write_sync(lambda tx: activate_patient(
                tx.conn, ins=ins, code=code, now=datetime.now(UTC), password=password))
        finally:
            ctx.close()
        return patient.address


_counter = iter(range(10**6))


def new_national_id() -> str:
    """A fresh, valid national identifier: ``8`` + an RPPS passing the Luhn check."""
    body = f"1{next(_counter):09d}"
    return "8" + body + luhn_check_digit(body)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def configure(pdir: PlatformDir, section: str, **values: object) -> None:
    """Set keys of one ``[section]`` of the platform's configuration file (the section is
    added if missing; keys already there are replaced)."""
    lines = pdir.config_path.read_text(encoding="utf-8").splitlines()
    new = [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    header = f"[{section}]"
    if header not in (ln.strip() for ln in lines):
        lines += ["", header, *new]
    else:
        out: list[str] = []
        inside = False
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("["):
                inside = stripped == header
                out.append(line)
                if inside:
                    out += new
                continue
            key = stripped.split("=", 1)[0].strip()
            if inside and "=" in stripped and key in values:
                continue
            out.append(line)
        lines = out
    pdir.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config_mod.load(pdir.config_path)  # still valid


def database_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The ``database_url`` of a platform on ``backend``: a fresh PostgreSQL database of the
    session's server, or "" (SQLite in the data directory)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_server").create_database())
    return ""


def make_platform_dir(root: Path, database_url: str = "") -> PlatformDir:
    ports = {name: free_port() for name in PORTS}
    opts = InitOptions(directory=root, ports=ports, database_url=database_url)
    result = write_all(opts)
    from caducee.cmd_setup import upgrade_schema

    upgrade_schema(config_mod.load(result.config_path))
    return PlatformDir(root, result.config_path, ports)


@dataclass
class InProcessPlatform:
    """The platform's services running on a private event loop in a thread."""

    pdir: PlatformDir
    services: tuple[str, ...] = ALL_SERVICES
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    ctx: Context | None = None
    platform: Platform | None = None
    _thread: threading.Thread | None = None

    def start(self) -> InProcessPlatform:
        self.ctx = self.pdir.context()
        ready = threading.Event()
        error: list[BaseException] = []

        def runner() -> None:
            asyncio.set_event_loop(self.loop)

            async def boot() -> None:
                assert self.ctx is not None
                self.platform = await start_platform(self.ctx, self.services)

            try:
                self.loop.run_until_complete(boot())
            except BaseException as exc:  # surfaced to the test thread
                error.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=runner, name="platform", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        return self

    def call(self, coro_factory):
        """Run a coroutine on the platform's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_factory(), self.loop).result(60)

    def stop(self) -> None:
        if self.platform is not None:
            self.call(self.platform.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        if self.ctx is not None:
            self.ctx.close()
        self.loop.close()


@dataclass
class SubprocessPlatform:
    """`caducee run` as a child process (for SIGTERM and SIGKILL tests)."""

    pdir: PlatformDir
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: ``caducee run --services`` (None: all of them).
    services: tuple[str, ...] | None = None

    def start(self) -> SubprocessPlatform:
        self.log_path = self.pdir.root / "run.log"
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        extra = ["--services", ",".join(self.services)] if self.services else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caducee", "-c", str(self.pdir.config_path), "run", *extra],
            stdout=log, stderr=log, env=env,
        )
        wait_port("127.0.0.1", self.pdir.ports["submission"], timeout=30)
        wait_port("127.0.0.1", self.pdir.ports["submissions"], timeout=30)
        return self

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def wait_ready_line(p: SubprocessPlatform) -> None:
    wait_for(lambda: '"ready"' in p.log_text() or " ready" in p.log_text(), 30, "ready line")
