"""TLS contexts for every listener (ARCHITECTURE.md §5, DOMAIN.md §1).

TLS 1.2 minimum; with TLS 1.2 only the ECDHE AES-GCM/CBC suites of the trust space's
reference (plus their ECDSA twins); TLS 1.3 suites as OpenSSL negotiates them. Client
certificates are requested (not required) and verified against the configured trust
anchors, for SASL EXTERNAL and mutual TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ]
)


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None and client_ca.exists():
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(ca: Path | None = None) -> ssl.SSLContext:
    """For our own outgoing connections and for tests: verify the peer, TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tune_asyncio_tls(buffer_size: int = 4 * 1024) -> None:
    """Shrink asyncio's per-connection TLS read buffer (process-wide).

    Python 3.11's ``asyncio.sslproto.SSLProtocol`` allocates a 256 KiB buffer for every TLS
    connection. It is only the buffer the ciphertext is read into; a larger record (at most
    16 KiB, RFC 8446 §5.1) is simply read in several steps (a few more ``recv`` calls for
    large messages). Measured on an idle SMTP connection after STARTTLS when the listeners
    still used it: 280 KiB with 256 KiB, 40 KiB with 8 KiB, 36 KiB with 4 KiB.

    The IMAP and SMTP listeners no longer use ``SSLProtocol`` (``mailstore.imap.tls`` and
    ``smtp_gateway.tls_transport``: ~21 and ~20 KiB per idle TLS connection); the web
    server (uvicorn), the outbound SMTP client and the HTTPS clients still do.
    """
    from asyncio import sslproto

    sslproto.SSLProtocol.max_size = buffer_size
