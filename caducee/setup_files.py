"""What `caducee init` writes: the configuration file, the CA and certificates, the keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from caducee import pki
from mailstore.crypto import MasterKeyring
from smtp_gateway.dkim_sign import dns_txt_record, generate_key

#: Listener names and their port offsets (port-base 10000 gives the demo ports).
PORTS = {
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "web": 443,
    "mta": 25,
}


@dataclass
class InitOptions:
    directory: Path
    hostname: str = "mail.demo.mssante.fr"
    domains: list[str] = field(default_factory=lambda: ["demo.mssante.fr"])
    patient_domain: str = ""
    listen_host: str = "127.0.0.1"
    port_base: int = 10000
    ports: dict[str, int] = field(default_factory=dict)
    database_url: str = ""

    def port(self, name: str) -> int:
        return self.ports.get(name, self.port_base + PORTS[name])


def config_text(opts: InitOptions) -> str:
    patient = opts.patient_domain or f"patient.{opts.domains[0]}"
    h = opts.listen_host
    db = (
        f'url = "{opts.database_url}"'
        if opts.database_url
        else '# url = "postgresql://caducee:secret@127.0.0.1:5432/caducee"  '
        "# default: SQLite file caducee.db in data_dir"
    )
    domains = ", ".join(f'"{d}"' for d in opts.domains)
    return f"""# Caducée configuration, written by `caducee init`.
# Relative paths are relative to this file. Reference: README.md and docs/.

[server]
hostname = "{opts.hostname}"
data_dir = "."
log_format = "auto"     # "json", "text" or "auto" (text on a terminal)

[domains]
professional = [{domains}]
patient = "{patient}"

[database]
{db}

[tls]
cert = "tls/server.crt"
key = "tls/server.key"
client_ca = "tls/ca.crt"   # trust anchors for client certificates (AUTH EXTERNAL)

[keys]
master_key_file = "keys/master.key"

[dkim]
selector = "caducee"
key_file = "keys/dkim.key"

[submission]
listen = ["{h}:{opts.port('submission')}"]              # STARTTLS (RFC 6409)
implicit_tls_listen = ["{h}:{opts.port('submissions')}"]  # implicit TLS (RFC 8314)

[imap]
listen = ["{h}:{opts.port('imap')}"]                  # STARTTLS (RFC 3501)
implicit_tls_listen = ["{h}:{opts.port('imaps')}"]    # implicit TLS (RFC 8314)

[web]
listen = ["{h}:{opts.port('web')}"]                   # HTTPS: /api/directory

[mta]
listen = ["{h}:{opts.port('mta')}"]   # other operators (port 25 in production), STARTTLS
require_client_certificate = true   # mutual TLS: a certificate of tls.client_ca
require_dkim = true                 # 550 5.7.20 without a passing DKIM signature

[outbound]
retry_schedule = [60, 300, 900, 3600, 7200]   # seconds; the last step repeats
max_age_days = 5
dns_nameservers = []    # empty: the system's resolver
smtp_port = 25
# tls_ca_file = "tls/trust-space-ca.crt"   # default: tls.client_ca

[policy]
max_message_size = 20971520      # SMTP SIZE, IMAP APPENDLIMIT, web uploads
max_attachment_size = 10485760
trust_sources = []               # liste blanche XML files or https URLs, plain lists

[auth]
max_failures = 10
window_seconds = 60
lockout_seconds = 300

[audit]
journal_key_file = "keys/journal.key"
checkpoint_file = "audit/checkpoints.log"
gnupg_home = "keys/gnupg"
"""


@dataclass
class InitResult:
    config_path: Path
    dkim_records: dict[str, str]
    client_p12: Path
    client_p12_password: str


def write_all(opts: InitOptions, *, client_identifier: str = "810000000000") -> InitResult:
    """Write the configuration, certificates and keys into ``opts.directory``."""
    import secrets

    d = opts.directory
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)  # the data directory holds keys and the database
    tls_dir = d / "tls"
    keys_dir = d / "keys"
    tls_dir.mkdir(exist_ok=True)
    keys_dir.mkdir(exist_ok=True, mode=0o700)
    keys_dir.chmod(0o700)
    (d / "audit").mkdir(exist_ok=True)

    ca = pki.create_ca()
    pki.write_cert(tls_dir / "ca.crt", ca.cert)
    pki.write_key(tls_dir / "ca.key", ca.key)
    names = [opts.hostname, "localhost", "127.0.0.1", "::1"]
    if opts.listen_host not in names and opts.listen_host not in ("0.0.0.0", "::"):  # noqa: S104
        names.append(opts.listen_host)
    server = pki.issue_server(ca, names)
    pki.write_cert(tls_dir / "server.crt", server.cert)
    pki.write_key(tls_dir / "server.key", server.key)
    client = pki.issue_client(ca, "Demo professional", client_identifier)
    pki.write_cert(tls_dir / "demo-client.crt", client.cert)
    pki.write_key(tls_dir / "demo-client.key", client.key)
    p12_password = secrets.token_urlsafe(9)
    pki.write_p12(tls_dir / "demo-client.p12", client, ca.cert, p12_password.encode())

    MasterKeyring.generate().save(keys_dir / "master.key")
    dkim_key = generate_key(keys_dir / "dkim.key")
    record = dns_txt_record(dkim_key)

    from audit.export_signing import create_operator_gpg_key
    from audit.keys import create_journal_key

    create_journal_key(keys_dir / "journal.key")
    gnupg_home = keys_dir / "gnupg"
    gnupg_home.mkdir(exist_ok=True, mode=0o700)
    create_operator_gpg_key(gnupg_home, f"Caducée operator ({opts.hostname})",
                            f"audit@{opts.domains[0]}")

    config_path = d / "caducee.toml"
    config_path.write_text(config_text(opts), encoding="utf-8")
    patient = opts.patient_domain or f"patient.{opts.domains[0]}"
    records = {
        f"caducee._domainkey.{dom}": record for dom in [*opts.domains, patient]
    }
    return InitResult(config_path, records, tls_dir / "demo-client.p12", p12_password)
