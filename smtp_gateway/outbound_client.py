"""The SMTP client that hands queued messages to other operators (aiosmtplib).

Rules of the trust space (DOMAIN.md §1, ARCHITECTURE.md §5):

* **STARTTLS is required** (RFC 3207): a peer that does not offer it, or whose handshake
  fails, is a failed host — never a cleartext fallback.
* The peer's certificate is **verified** against the configured trust anchors and must
  name the MX host (RFC 6125 §6; as with DANE/MTA-STS, RFC 8461 §4.2), TLS 1.2 at least.
* Our certificate is presented as a **client certificate** (mutual TLS).
* One connection carries several messages to the same host (RFC 5321 §3.3: a new
  transaction after the previous one ended; ``RSET`` after a failed one).

Each recipient gets its own result: sent, temporary (4xx, network) or permanent (5xx).
A message the next hop cannot take as it is — SMTPUTF8 (RFC 6531 §3.2) or an 8-bit body
(RFC 6152 §3) without the extension — is a permanent failure: never sent as is.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import aiosmtplib

from smtp_gateway.mx import MxHost

log = logging.getLogger(__name__)

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*(.*)$", re.S)
_WS = re.compile(r"\s+")

#: The TLS 1.2 suites of the trust space's client-side reference (DOMAIN.md §1).
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


class Status(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    status: Status
    #: The SMTP reply code, 0 when there was none (network or TLS failure).
    code: int = 0
    #: Enhanced status code (RFC 3463), from the reply or chosen by us.
    enhanced: str = ""
    text: str = ""
    remote_host: str | None = None

    @property
    def reply(self) -> str | None:
        """The reply as ``550 5.1.1 text`` (for DSNs and logs), or None without one."""
        if not self.code:
            return None
        return " ".join(p for p in (str(self.code), self.enhanced, self.text) if p)

    @property
    def error(self) -> str:
        """A one-line description for the queue's ``last_error``."""
        where = f"{self.remote_host}: " if self.remote_host else ""
        return where + (self.reply or self.text or self.status.value)


@dataclass(frozen=True)
class OutboundMessage:
    sender: str  # "" is the null reverse-path
    recipients: Sequence[str]
    raw: bytes
    smtputf8: bool = False
    eight_bit: bool = False


class HostFailure(Exception):
    """Could not open a usable session with one host (connect, greeting, TLS): try the
    next one. ``permanent`` when the host answered the greeting with 5xx."""

    def __init__(self, message: str, *, code: int = 0, permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


def client_tls_context(
    ca_file: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """Verify the peer against ``ca_file`` (system anchors if None), present ``cert``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass(frozen=True)
class ClientSettings:
    #: Our name in EHLO (RFC 5321 §4.1.1.1).
    hostname: str
    tls_context: ssl.SSLContext
    #: The SMTP port of the peers (25; tests use a loopback port).
    port: int = 25
    connect_timeout: float = 30.0
    #: Per-command timeout; RFC 5321 §4.5.3.2 suggests minutes, DATA's end up to 10.
    command_timeout: float = 300.0


def _split_reply(code: int, message: str) -> tuple[str, str]:
    text = _WS.sub(" ", message).strip()
    m = _ENHANCED.match(text)
    if m:
        return m.group(1), m.group(2)[:500]
    default = "4.0.0" if code < 500 else "5.0.0"
    return default, text[:500]


def _from_reply(recipient: str, code: int, message: str, host: str) -> RecipientResult:
    enhanced, text = _split_reply(code, message)
    if 200 <= code < 300:
        status = Status.SENT
    elif code >= 500:
        status = Status.PERMANENT
    else:
        status = Status.TEMPORARY
    return RecipientResult(recipient, status, code, enhanced, text, host)


class OutboundConnection:
    """One verified, encrypted SMTP session with one host of a destination."""

    def __init__(self, smtp: aiosmtplib.SMTP, host: MxHost, address: str) -> None:
        self.smtp = smtp
        self.host = host
        self.address = address
        #: The session broke (network, timeout): do not use it again.
        self.broken = False

    @classmethod
    async def open(cls, settings: ClientSettings, host: MxHost) -> OutboundConnection:
        """Connect to one of ``host``'s addresses, EHLO, STARTTLS (required), EHLO."""
        failures: list[str] = []
        for address in host.addresses:
            smtp = aiosmtplib.SMTP(
                hostname=address,
                port=settings.port,
                local_hostname=settings.hostname,
                timeout=settings.command_timeout,
                start_tls=False,
            )
            try:
                await smtp.connect(timeout=settings.connect_timeout)
            except aiosmtplib.SMTPConnectResponseError as exc:
                # RFC 5321 §3.1: a 554 greeting refuses us; 421 means try later.
                raise HostFailure(f"{host.name}[{address}] greeting: {exc.code} {exc.message}",
                                  code=exc.code, permanent=exc.code >= 500) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                failures.append(f"{host.name}[{address}]: {_describe(exc)}")
                continue
            try:
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise HostFailure(f"{host.name}[{address}] does not offer STARTTLS "
                                      "(required in the trust space)")
                await smtp.starttls(server_hostname=host.name, tls_context=settings.tls_context)
                await smtp.ehlo()
            except HostFailure:
                await _abort(smtp)
                raise
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                await _abort(smtp)
                failures.append(f"{host.name}[{address}]: TLS: {_describe(exc)}")
                continue
            log.info("outbound session open",
                     extra={"host": host.name, "address": address})
            return cls(smtp, host, address)
        raise HostFailure("; ".join(failures) or f"{host.name}: no address")

    async def send(self, message: OutboundMessage) -> list[RecipientResult]:
        """One transaction (RFC 5321 §3.3); a result for every recipient."""
        host = self.host.name
        smtp = self.smtp
        encoding = "utf-8" if message.smtputf8 else "ascii"
        if message.smtputf8 and not smtp.supports_extension("smtputf8"):
            # RFC 6531 §3.2: the message cannot be downgraded here; it bounces.
            return [RecipientResult(r, Status.PERMANENT, 0, "5.6.7",
                                    "the next hop does not support SMTPUTF8", host)
                    for r in message.recipients]
        if message.eight_bit and not smtp.supports_extension("8bitmime"):
            # RFC 6152 §3: to a server that does not advertise 8BITMIME the client must
            # not, under any circumstances, send octets outside US-ASCII; it converts the
            # message to 7 bit or treats it as a permanent error. Converting would break
            # our DKIM signature (the body hash, RFC 6376 §3.7), which the trust space's
            # MTAs require: a permanent error, 5.6.3 "conversion required but not
            # supported" (RFC 3463 §3.7).
            return [RecipientResult(r, Status.PERMANENT, 0, "5.6.3",
                                    "the next hop does not support 8BITMIME and the "
                                    "message has an 8-bit body (RFC 6152)", host)
                    for r in message.recipients]
        options = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(message.raw)}")
        if message.eight_bit and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if message.smtputf8:
            options.append("SMTPUTF8")
        try:
            await smtp.mail(message.sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            return [_from_reply(r, exc.code, exc.message, host) for r in message.recipients]
        except (aiosmtplib.SMTPException, OSError) as exc:
            return self._lost(message.recipients, exc)
        results: dict[str, RecipientResult] = {}
        accepted: list[str] = []
        for rcpt in message.recipients:
            try:
                await smtp.rcpt(rcpt, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                results[rcpt] = _from_reply(rcpt, exc.code, exc.message, host)
            except (aiosmtplib.SMTPException, OSError) as exc:
                lost = self._lost([r for r in message.recipients if r not in results], exc)
                return [*results.values(), *lost]
            else:
                accepted.append(rcpt)
        if not accepted:
            await self._reset()
            return list(results.values())
        try:
            response = await smtp.data(message.raw)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            results.update({r: _from_reply(r, exc.code, exc.message, host) for r in accepted})
        except (aiosmtplib.SMTPException, OSError) as exc:
            results.update({r.recipient: r for r in self._lost(accepted, exc)})
        else:
            results.update({r: _from_reply(r, response.code, response.message, host)
                            for r in accepted})
        return [results[r] for r in message.recipients]

    def _lost(self, recipients: Sequence[str], exc: BaseException) -> list[RecipientResult]:
        self.broken = True
        text = f"connection lost: {_describe(exc)}"
        return [RecipientResult(r, Status.TEMPORARY, 0, "4.4.2", text, self.host.name)
                for r in recipients]

    async def _reset(self) -> None:
        try:
            await self.smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self.broken = True

    async def close(self) -> None:
        """``QUIT`` (RFC 5321 §4.1.1.10), or just drop a broken session."""
        if not self.broken:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self.smtp.quit()
                return
        await _abort(self.smtp)


async def _abort(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return _WS.sub(" ", text)[:300]
