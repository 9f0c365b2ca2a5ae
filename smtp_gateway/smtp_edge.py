"""What the SMTP listeners (submission, MTA) share: DATA checks, the TLS peer, errors.

* :func:`check_data` applies the rules every accepted message passes before policy: no NUL,
  no bare CR, no undeclared 8-bit data, the size limit; a bare LF is stored as CRLF
  (RFC 5321 §2.3.8, RFC 6152 §3; SMTP smuggling: only CRLF.CRLF ever ends DATA).
* :func:`peer_certificate`, :func:`certificate_names`: the
  verified client certificate of a session (SASL EXTERNAL, mutual TLS between operators).
* :func:`exception_reply`: our fault answers ``451 4.3.0`` with a correlation id that is
  also in the log; a peer's TLS failure is not worth a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import ssl
from typing import Any, Protocol

from aiosmtpd.smtp import Envelope, Session, TLSSetupException

from policy.decision import Reason
from smtp_gateway import replies

log = logging.getLogger("smtp_gateway.smtp")

_8BIT = re.compile(rb"[\x80-\xff]")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


def check_data(envelope: Envelope, max_size: int) -> bytes | str:
    """The message bytes to accept (CRLF-normalised, ending in CRLF), or a refusal reply."""
    raw = envelope.original_content
    assert isinstance(raw, bytes | bytearray)
    data = bytes(raw)
    if b"\x00" in data:
        return replies.R554_NUL_IN_DATA.line()
    if _BARE_CR.search(data):
        return replies.R554_BARE_CR.line()
    # A bare LF is a client bug (RFC 5321 §2.3.8); like Postfix's "normalize" mode we
    # store it as CRLF. It never ends DATA: only CRLF.CRLF does (SMTP smuggling).
    data = _BARE_LF.sub(b"\r\n", data)
    body_8bit = any(o.upper() == "BODY=8BITMIME" for o in envelope.mail_options)
    if not body_8bit and not envelope.smtp_utf8 and _8BIT.search(data):
        return replies.R554_8BIT_WITHOUT_8BITMIME.line()
    if len(data) > max_size:
        return replies.R552_MESSAGE_TOO_LARGE.line()
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


class RefusalHook(Protocol):
    """Told of every refusal an edge answers (the runner journals ``message.refused``).

    ``sender``/``recipient`` are the envelope addresses concerned (identifiers, not
    content); ``detail`` may name an attachment and must never be journaled.
    """

    def __call__(
        self, actor: str, ip: str | None, reason: Reason, detail: str, *,
        sender: str | None = None, recipient: str | None = None,
    ) -> None: ...


def client_ip(session: Session) -> str | None:
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def peer_certificate(server: Any, session: Session) -> dict[str, Any] | None:
    """The peer's verified certificate (``ssl.getpeercert()``), or None: the TLS facts'
    ``peercert``, which stays readable once the connection is gone."""
    if session.ssl:
        cert = session.ssl.get("peercert")
    elif server.transport is not None:
        cert = server.transport.get_extra_info("peercert")
    else:
        cert = None
    return cert or None


def certificate_names(cert: dict[str, Any] | None) -> list[str]:
    """The DNS names of a verified certificate: subjectAltName dNSName entries, else the
    common name (RFC 6125 §6.4.4)."""
    if not cert:
        return []
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if names:
        return names
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
    return names


def ssl_info(server: Any) -> tuple[str, str] | None:
    """``(TLS version, cipher)`` of the session, or None in clear."""
    transport = server.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return ssl_object.version() or "TLS", cipher[0] if cipher else "unknown"


def exception_reply(error: Exception) -> str:
    """Our fault: log with a correlation id, answer temporarily (never 500 + traceback)."""
    if isinstance(error, TLSSetupException | ssl.SSLError | ConnectionError):
        # The peer's fault (failed handshake, reset): not worth a traceback.
        log.info("SMTP peer error: %s", error.__class__.__name__)
        return "454 4.7.0 TLS not available due to temporary reason"
    ref = secrets.token_hex(4)
    log.error("SMTP session failed (ref %s)", ref, exc_info=error)
    return f"{replies.R451_TEMPORARY.line()} (ref {ref})"
