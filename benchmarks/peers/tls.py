"""Throw-away TLS material for the peers: a self-signed server certificate for loopback."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def key_type_of(cert_file: Path) -> str:
    """``"rsa2048"``-like or ``"ec256"``-like name of a certificate's key, to match it."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec{key.curve.key_size}"
    raise ValueError(f"unsupported key type in {cert_file}")


def write_self_signed(
    directory: Path, hostname: str = "localhost", key_type: str = "rsa2048"
) -> tuple[Path, Path]:
    """Write ``server.crt`` and ``server.key`` (PEM) into ``directory``; return their paths.

    The certificate names ``hostname``, ``localhost`` and 127.0.0.1; it is its own CA, so
    a client verifies against ``server.crt``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    elif key_type == "ec256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "ec384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"unknown key type {key_type!r}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName(hostname),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
