"""The configuration file: one TOML file, validated at start (ARCHITECTURE.md §8).

Every section is a frozen dataclass; a field's type annotation says how its value is
checked. An error names the file, the line and the key::

    conf/caducee.toml:12: key «submission.listen»: expected "host:port", got "localhost"

Relative paths are resolved against the directory of the configuration file.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem, located by file, line and key."""

    def __init__(self, file: Path | str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = str(file), line, key, message
        where = f"{file}:{line}" if line else f"{file}"
        super().__init__(f"{where}: key «{key}»: {message}")


@dataclass(frozen=True)
class Listen:
    """A listening address written ``"host:port"`` (IPv6 as ``"[::1]:587"``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Listen:
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text)
        if not m:
            raise ValueError(f'expected "host:port", got "{text}"')
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {text!r}")
        return cls(host, port)


# -- sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSection:
    #: The host name we announce in SMTP greetings and Received headers.
    hostname: str
    #: Where the database (SQLite), keys and spools live.
    data_dir: Path = Path()
    #: "json" (one object a line), "text", or "auto" (text on a terminal, else JSON).
    log_format: str = "auto"
    log_level: str = "INFO"
    #: Seconds to finish in-flight transactions on SIGTERM.
    shutdown_grace: float = 30.0


@dataclass(frozen=True)
class DomainsSection:
    #: Mail domains hosted here for professionals.
    professional: list[str]
    #: The patient domain (``<INS>@<patient domain>``).
    patient: str = ""


@dataclass(frozen=True)
class DatabaseSection:
    #: SQLAlchemy URL; default: SQLite file ``caducee.db`` in the data directory.
    url: str = ""


@dataclass(frozen=True)
class TlsSection:
    cert: Path = Path("tls/server.crt")
    key: Path = Path("tls/server.key")
    #: Trust anchors for client certificates (CPS cards; the demo CA in the demo).
    client_ca: Path = Path("tls/ca.crt")


@dataclass(frozen=True)
class KeysSection:
    master_key_file: Path = Path("keys/master.key")


@dataclass(frozen=True)
class DkimSection:
    enabled: bool = True
    selector: str = "caducee"
    key_file: Path = Path("keys/dkim.key")


@dataclass(frozen=True)
class WebSection:
    #: HTTPS listeners (the directory's JSON API; the webmail later). Port 443 in production.
    listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 443)])


@dataclass(frozen=True)
class SubmissionSection:
    #: STARTTLS listeners (RFC 6409; port 587 in production).
    listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 587)])
    #: Implicit-TLS listeners (RFC 8314; port 465 in production).
    implicit_tls_listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 465)])
    max_recipients: int = 100
    #: Seconds a connection may stay silent.
    idle_timeout: float = 300.0


@dataclass(frozen=True)
class AuthSection:
    #: Failed logins allowed per client address (and per account) within the window.
    max_failures: int = 10
    window_seconds: float = 60.0
    #: How long a client over the limit is refused.
    lockout_seconds: float = 300.0
    #: Lifetime of the in-memory cache of successful password verifications (0 disables).
    cache_seconds: float = 300.0
    #: How many argon2id verifications may run at once.
    max_concurrent_hashes: int = 4


@dataclass(frozen=True)
class AuditSection:
    #: False turns journaling off (benchmarks only: the journal is required in production).
    enabled: bool = True
    #: Ed25519 key that signs checkpoints (created by `caducee init`, mode 0600).
    journal_key_file: Path = Path("keys/journal.key")
    #: Public halves of replaced journal keys (`caducee audit rotate-key`), one
    #: ``<key id>.pub`` each: checkpoints they signed still verify.
    retired_keys_dir: Path = Path("keys/journal-retired")
    #: Append-only mirror of the signed checkpoints, outside the database.
    checkpoint_file: Path = Path("audit/checkpoints.log")
    #: GnuPG home holding the operator key that signs exports.
    gnupg_home: Path = Path("keys/gnupg")
    #: Fingerprint of the operator key; empty: the only secret key in ``gnupg_home``.
    operator_key: str = ""
    #: How long entries are kept before `caducee audit prune` may remove them (DOMAIN.md §8).
    retention_days: int = 183
    #: Sign a checkpoint every this many entries…
    checkpoint_every: int = 1000
    #: …and at least this often (seconds) while entries keep arriving.
    checkpoint_seconds: float = 300.0


@dataclass(frozen=True)
class PolicySection:
    """The rules of the trust space (policy/, docs/policy.md)."""

    #: Trusted-domain lists (liste blanche XML, or one domain a line): file paths, relative
    #: to this file, or https:// URLs.
    trust_sources: list[str] = field(default_factory=list)
    #: Seconds between reloads of the trusted lists (0: load once at start).
    trust_refresh_seconds: float = 21600.0
    #: CA bundle that verifies https trust sources (unset: the system's).
    trust_ca_file: Path | None = None
    #: MTA: the peer's client certificate must name a trusted domain.
    require_peer_identity: bool = False
    max_message_size: int = 20 * 1024 * 1024
    max_attachment_size: int = 10 * 1024 * 1024
    zip_max_members: int = 256
    zip_max_total_size: int = 64 * 1024 * 1024
    #: Largest uncompressed/compressed ratio of a ZIP member (zip bombs).
    zip_max_ratio: int = 100
    #: Days after a professional's latest message a patient may still write (0: no expiry).
    permission_expiry_days: int = 0
    #: Days a patient's one-time activation code stays valid.
    activation_code_days: int = 30


@dataclass(frozen=True)
class DirectorySection:
    """The directory of practitioners (directory/, README «Directory»)."""

    #: A wrong check digit (Luhn) in an extract is reported, not rejected (DOMAIN.md §3).
    lenient_identifiers: bool = True
    #: Where `caducee directory import` writes its reports (relative to this file).
    report_dir: Path = Path("reports")
    #: Processes parsing an extract in parallel (0: one per CPU, at most 4).
    import_workers: int = 0
    #: An import that would deactivate more than this share of the listed practitioners or
    #: mailboxes is refused (a truncated extract?) unless given ``--allow-deactivation``;
    #: 1.0 turns the check off.
    max_deactivation: float = 0.10


@dataclass(frozen=True)
class MtaSection:
    """The port-25 listener for other operators of the trust space (docs/outbound.md)."""

    #: STARTTLS listeners (port 25 in production); STARTTLS is required before MAIL.
    listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 25)])
    #: Mutual TLS (DOMAIN.md §1): the peer must present a certificate of the trust anchors
    #: (``tls.client_ca``) naming a trusted domain.
    require_client_certificate: bool = True
    #: Refuse (``550 5.7.20``) a message without a passing DKIM signature of its sender.
    require_dkim: bool = True
    max_recipients: int = 100
    idle_timeout: float = 300.0


@dataclass(frozen=True)
class OutboundSection:
    """The outbound queue and its SMTP client (docs/outbound.md)."""

    #: Seconds to wait after the 1st, 2nd… temporary failure; the last step repeats.
    retry_schedule: list[float] = field(
        default_factory=lambda: [60.0, 300.0, 900.0, 3600.0, 7200.0]
    )
    #: Days before an undeliverable message bounces (RFC 5321 §4.5.4.1: 4–5 days).
    max_age_days: float = 5.0
    #: DNS servers for MX and DKIM lookups (empty: the system's resolv.conf), and their port.
    dns_nameservers: list[str] = field(default_factory=list)
    dns_port: int = 53
    #: The peers' SMTP port (25; tests use a loopback port).
    smtp_port: int = 25
    #: Trust anchors that verify peers' certificates (unset: ``tls.client_ca``).
    tls_ca_file: Path | None = None
    #: Destination domains delivered at once.
    concurrency: int = 10
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    #: Seconds a claimed entry belongs to one node (a crashed node's entries wait this long).
    lease_seconds: float = 900.0


@dataclass(frozen=True)
class ImapSection:
    """The IMAP server (mailstore/imap/, README «Connecting a mail client»)."""

    #: STARTTLS listeners (RFC 3501; port 143 in production).
    listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 143)])
    #: Implicit-TLS listeners (RFC 8314; port 993 in production).
    implicit_tls_listen: list[Listen] = field(default_factory=lambda: [Listen("127.0.0.1", 993)])
    #: One command line (between literals), in octets.
    max_line: int = 64 * 1024
    #: A literal in any command but APPEND (a password, a search string), in octets.
    max_literal: int = 1024 * 1024
    #: APPEND's message limit in octets (0: the submission limit).
    max_message_size: int = 0
    #: Seconds of silence before login, then once logged in (RFC 3501 §5.4: ≥ 1800).
    preauth_timeout: float = 60.0
    autologout: float = 1800.0
    #: Accept LOGIN/AUTHENTICATE PLAIN without TLS. Only for benchmarks on loopback.
    allow_plaintext_auth: bool = False


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``path`` is the file it came from."""

    path: Path
    server: ServerSection
    domains: DomainsSection
    database: DatabaseSection = field(default_factory=DatabaseSection)
    tls: TlsSection = field(default_factory=TlsSection)
    keys: KeysSection = field(default_factory=KeysSection)
    dkim: DkimSection = field(default_factory=DkimSection)
    submission: SubmissionSection = field(default_factory=SubmissionSection)
    web: WebSection = field(default_factory=WebSection)
    auth: AuthSection = field(default_factory=AuthSection)
    audit: AuditSection = field(default_factory=AuditSection)
    policy: PolicySection = field(default_factory=PolicySection)
    directory: DirectorySection = field(default_factory=DirectorySection)
    mta: MtaSection = field(default_factory=MtaSection)
    outbound: OutboundSection = field(default_factory=OutboundSection)
    imap: ImapSection = field(default_factory=ImapSection)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.server.data_dir / 'caducee.db'}"

    @property
    def patient_domain(self) -> str:
        return self.domains.patient

    def is_professional_domain(self, domain: str) -> bool:
        """One of the professional domains this platform hosts (``[domains] professional``)."""
        return domain.lower() in self.domains.professional

    def is_local_domain(self, domain: str) -> bool:
        return self.is_professional_domain(domain) or domain.lower() == self.domains.patient


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hint for name, hint in hints.items() if name != "path"}


SECTION_TYPES: dict[str, type] = _section_types()


# -- loading -----------------------------------------------------------------------------


def load(path: Path | str) -> Config:
    """Read, validate and resolve a configuration file; raise :class:`ConfigError`."""
    path = Path(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, "-", f"cannot read the file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, int(m.group(1)) if m else None, "-", str(exc)) from None
    locator = _Locator(raw_text)
    base = path.resolve().parent
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in SECTION_TYPES:
            raise ConfigError(
                path, locator.line(name), name,
                "unknown section (known: " + ", ".join(sorted(SECTION_TYPES)) + ")",
            )
        if not isinstance(value, dict):
            raise ConfigError(path, locator.line(name), name, "must be a [section]")
        sections[name] = _build(SECTION_TYPES[name], value, name, path, locator, base)
    for name, typ in SECTION_TYPES.items():
        if name not in sections:
            if _has_required(typ):
                raise ConfigError(path, None, name, "required section is missing")
            sections[name] = _build(typ, {}, name, path, locator, base)
    cfg = Config(path=path.resolve(), **sections)
    _check(cfg, locator)
    return cfg


def _has_required(typ: type) -> bool:
    return any(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(typ)
    )


def _build(
    typ: type, values: dict[str, Any], section: str, path: Path, locator: _Locator, base: Path
) -> Any:
    hints = typing.get_type_hints(typ)
    known = {f.name for f in dataclasses.fields(typ)}
    for key in values:
        if key not in known:
            raise ConfigError(
                path, locator.line(section, key), f"{section}.{key}",
                "unknown key (known: " + ", ".join(sorted(known)) + ")",
            )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(typ):
        full = f"{section}.{f.name}"
        if f.name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(path, locator.line(section), full, "required key is missing")
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()  # type: ignore[misc,operator,unused-ignore]
            )
            kwargs[f.name] = _resolve_paths(default, base)
            continue
        try:
            kwargs[f.name] = _convert(hints[f.name], values[f.name], base)
        except (TypeError, ValueError) as exc:
            raise ConfigError(path, locator.line(section, f.name), full, str(exc)) from None
    return typ(**kwargs)


def _resolve_paths(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else (base / value)
    return value


def _convert(hint: Any, value: Any, base: Path) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_convert(item, v, base) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(args[0], value, base)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path string, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if hint is Listen:
        if not isinstance(value, str):
            raise TypeError(f'expected "host:port", got {value!r}')
        return Listen.parse(value)
    raise TypeError(f"unsupported setting type {hint!r}")  # pragma: no cover


def _check(cfg: Config, locator: _Locator) -> None:
    """Cross-field checks that types alone cannot express."""
    p = cfg.path
    if cfg.server.log_format not in ("auto", "json", "text"):
        raise ConfigError(
            p, locator.line("server", "log_format"), "server.log_format",
            f'must be "auto", "json" or "text", got "{cfg.server.log_format}"',
        )
    if not cfg.domains.professional:
        raise ConfigError(
            p, locator.line("domains", "professional"), "domains.professional",
            "at least one professional domain is required",
        )
    for d in [*cfg.domains.professional, cfg.domains.patient]:
        if d and not _DOMAIN.fullmatch(d):
            raise ConfigError(
                p, locator.line("domains"), "domains",
                f'"{d}" is not a lower-case domain name',
            )
    if not 0 <= cfg.directory.import_workers <= 64:
        raise ConfigError(
            p, locator.line("directory", "import_workers"), "directory.import_workers",
            f"must be 0 (one per CPU) to 64, got {cfg.directory.import_workers}",
        )
    if not 0 < cfg.directory.max_deactivation <= 1:
        raise ConfigError(
            p, locator.line("directory", "max_deactivation"), "directory.max_deactivation",
            f"must be a share above 0 and at most 1 (0.1 = 10 %), "
            f"got {cfg.directory.max_deactivation}",
        )
    if cfg.policy.max_message_size < 1024:
        raise ConfigError(
            p, locator.line("policy", "max_message_size"), "policy.max_message_size",
            "must be at least 1024 bytes",
        )
    if cfg.imap.autologout < 1800:
        raise ConfigError(
            p, locator.line("imap", "autologout"), "imap.autologout",
            "must be at least 1800 seconds: RFC 3501 §5.4 wants an autologout timer of at "
            "least 30 minutes once logged in",
        )
    if not cfg.domains.patient:
        object.__setattr__(
            cfg.domains, "patient", "patient." + cfg.domains.professional[0]
        )


_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class _Locator:
    """Finds the line of ``[section]`` and of ``key =`` inside it, for error messages."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        current = ""
        for lineno, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            m = re.match(r"^\[\s*([^\]]+?)\s*\]", s)
            if m:
                current = m.group(1)
                self.sections.setdefault(current, lineno)
                continue
            m = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=', s)
            if m:
                key = m.group(1)
                if "." in key and not current:
                    sec, _, key = key.rpartition(".")
                    self.keys.setdefault((sec, key), lineno)
                else:
                    self.keys.setdefault((current, key), lineno)

    def line(self, section: str, key: str | None = None) -> int | None:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section)
