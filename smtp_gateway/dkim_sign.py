"""DKIM signing (RFC 6376) with the RSA operation done by OpenSSL through ``cryptography``.

dkimpy signs RSA in pure Python (~8 ms a message); hashing is done here with hashlib and
the signature with ``cryptography`` (~0.3 ms). Verification stays with dkimpy.

Implemented: ``a=rsa-sha256``, ``c=relaxed/relaxed`` (RFC 6376 §3.4.2, §3.4.4), body hash over
the whole body (no ``l=``), the signed header list over-signing From/To/Subject/Date so they
cannot be added later (RFC 6376 §8.15).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: Header fields signed when present (lower-case), RFC 6376 §5.4.1 recommendations plus
#: the MSSanté ``X-MSS-*`` fields that carry meaning for the dossier.
SIGNED_FIELDS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "in-reply-to", "references", "list-id",
    "disposition-notification-to", "x-mss-mes", "x-mss-codecda", "x-mss-ins",
)
#: Fields signed once more than they appear, so an added instance breaks the signature.
OVERSIGNED = ("from", "subject", "date", "to", "cc", "reply-to")

_WSP_RUN = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")


_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r\n|$)")


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: collapse WSP runs, strip trailing WSP, drop trailing empty lines."""
    body = _WSP_RUN.sub(b" ", body)
    body = _TRAILING_WSP.sub(b"", body)
    body = body.rstrip(b"\r\n")
    # rstrip took every trailing CR and LF: put back the one CRLF that ends the last line.
    return body + b"\r\n" if body else b""


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: lower-case name, unfold, collapse WSP, trim around the colon."""
    value = _FOLD.sub(b"", value)
    value = value.replace(b"\r\n", b"")
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value


def split_message(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split into ``[(name, raw value incl. folding)]`` and the body (CRLF line endings)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        head, body = (raw if raw.endswith(b"\r\n") else raw + b"\r\n"), b""
    else:
        head, body = raw[: end + 2], raw[end + 4 :]
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for one domain and selector with an RSA key."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey

    @classmethod
    def from_pem_file(cls, path: Path, domain: str, selector: str) -> DkimSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: DKIM key must be an RSA private key")
        return cls(domain, selector, key)

    def signature_header(self, raw: bytes, *, now: int | None = None) -> bytes:
        """The ``DKIM-Signature:`` field (with CRLF) to prepend to ``raw``."""
        fields, body = split_message(raw)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        # Pick the instances to sign bottom-up (RFC 6376 §5.4.2).
        present: dict[bytes, list[bytes]] = {}
        for name, value in fields:
            present.setdefault(name.strip().lower(), []).append(value)
        names: list[bytes] = []
        canon: list[bytes] = []
        for field_name in SIGNED_FIELDS:
            key = field_name.encode()
            instances = present.get(key, [])
            for value in reversed(instances):
                names.append(key)
                canon.append(relaxed_header(key, value) + b"\r\n")
            if field_name in OVERSIGNED:
                names.append(key)  # a non-existent instance signs as empty (§5.4.2)
        tags = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.domain}; s={self.selector}; "
            f"t={now if now is not None else int(time.time())}; "
        ).encode() + b"h=" + b":".join(names) + b"; bh=" + body_hash + b"; b="
        value = b" " + _fold_tags(tags)
        to_sign = b"".join(canon) + relaxed_header(b"DKIM-Signature", value)
        signature = self.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        b64 = base64.b64encode(signature)
        folded_sig = b"\r\n\t".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return b"DKIM-Signature:" + value + folded_sig + b"\r\n"

    def sign(self, raw: bytes) -> bytes:
        return self.signature_header(raw) + raw

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        return dns_txt_record(self.key)


def _fold_tags(tags: bytes) -> bytes:
    """Fold the tag list at ``; `` boundaries so no header line exceeds ~78 octets."""
    parts = tags.split(b"; ")
    lines: list[bytes] = []
    current = b""
    for i, part in enumerate(parts):
        piece = part + (b";" if i < len(parts) - 1 else b"")
        if current and len(current) + 1 + len(piece) > 70:
            lines.append(current)
            current = piece
        else:
            current = piece if not current else current + b" " + piece
    lines.append(current)
    return b"\r\n\t".join(lines)


def dns_txt_record(key: rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def generate_key(path: Path) -> rsa.RSAPrivateKey:
    """Create an RSA-2048 DKIM key file (PEM, mode 0600)."""
    import os

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key
