"""Delivery status notifications (RFC 3464) for messages the queue gives up on.

A DSN is ``multipart/report; report-type=delivery-status`` (RFC 6522 §3):

1. a human-readable part, in French with an English summary (the sender reads it);
2. ``message/delivery-status``: per-message fields (``Reporting-MTA``, ``Arrival-Date``,
   RFC 3464 §2.2) then one block per failed recipient (``Final-Recipient``, ``Action``,
   ``Status``, ``Remote-MTA``, ``Diagnostic-Code``, ``Last-Attempt-Date``, §2.3);
3. the original message's header block as ``text/rfc822-headers`` (RFC 6522 §4; the
   body is not returned: it may carry health data the sender already has).

It is sent with the null reverse-path (RFC 5321 §4.5.5) and ``Auto-Submitted:
auto-replied`` (RFC 3834 §5), so no DSN is ever sent about it. :func:`is_dsn` spots a
message that already is one.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

from smtp_gateway.trace import find_message_id, header_block

_POLICY = email.policy.SMTP  # CRLF line endings
_UNSAFE = re.compile(r"[\r\n\t]+")
_REPORT = re.compile(r"multipart/report\s*;.*report-type\s*=\s*\"?delivery-status", re.I | re.S)


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """Why one recipient failed (RFC 3464 §2.3)."""

    recipient: str
    #: Enhanced status code (RFC 3463), e.g. ``5.1.1``; ``4.4.7`` for an expired message.
    status: str
    #: The remote host that answered, if any (``Remote-MTA``).
    remote_mta: str | None = None
    #: The SMTP reply, e.g. ``550 5.1.1 No such user`` (``Diagnostic-Code: smtp; …``).
    smtp_reply: str | None = None
    #: A human explanation when there was no SMTP reply (DNS failure, expiry…).
    explanation: str = ""
    last_attempt: datetime | None = None


def is_dsn(raw: bytes) -> bool:
    """Is ``raw`` itself a delivery status notification (never answered with another)?"""
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block(raw))
    return any(_REPORT.search(str(v)) for v in headers.get_all("Content-Type", []))


def _clean(text: str) -> str:
    return _UNSAFE.sub(" ", text).strip()[:900]


def _address_type(address: str) -> str:
    """``rfc822`` for ASCII addresses, ``utf-8`` otherwise (RFC 6533 §3)."""
    return "rfc822" if address.isascii() else "utf-8"


def _human_text(hostname: str, failed: Sequence[FailedRecipient], subject: str) -> str:
    lines = [
        f"Ceci est le service de messagerie de {hostname}.",
        "",
        "Votre message n'a pas pu être distribué au(x) destinataire(s) suivant(s) :",
        "",
    ]
    for f in failed:
        why = f.smtp_reply or f.explanation or f.status
        where = f" (serveur {f.remote_mta})" if f.remote_mta else ""
        lines.append(f"  <{f.recipient}>{where} : {_clean(why)}")
    lines += [
        "",
        f"Objet du message : {subject}" if subject else "Objet du message : (sans objet)",
        "",
        "Le contenu de votre message n'est pas joint à cet avis ; seuls ses en-têtes le sont.",
        "",
        "-- ",
        f"This is the mail system at {hostname}. Your message could not be delivered to "
        "the recipient(s) above; the delivery report and the original headers are attached.",
        "",
    ]
    return "\n".join(lines)


def build_dsn(
    *,
    original: bytes,
    sender: str,
    hostname: str,
    arrival: datetime,
    failed: Sequence[FailedRecipient],
    now: datetime,
    queue_id: str = "",
) -> bytes:
    """The DSN for ``failed`` recipients of ``original``, addressed to ``sender`` (CRLF)."""
    if not failed:
        raise ValueError("a DSN needs at least one failed recipient")
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(header_block(original))
    try:
        subject = _clean(str(parsed.get("Subject", "")))[:200]
    except (ValueError, TypeError):  # an undecodable Subject: say nothing of it
        subject = ""
    outer = MIMEMultipart("report", report_type="delivery-status", policy=_POLICY)
    outer["From"] = str(Address("Système de messagerie Caducée", "MAILER-DAEMON", hostname))
    outer["To"] = sender
    outer["Subject"] = f"Message non distribué : {subject}" if subject else "Message non distribué"
    outer["Date"] = format_datetime(now)
    outer["Message-ID"] = make_msgid(domain=hostname)
    outer["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    original_id = find_message_id(original)
    if original_id:
        outer["References"] = original_id
    outer.preamble = "This is a MIME-encapsulated delivery status notification (RFC 3464)."

    outer.attach(MIMEText(_human_text(hostname, failed, subject), "plain", "utf-8",
                          policy=_POLICY))

    status = Message(policy=_POLICY)
    status["Content-Type"] = "message/delivery-status"
    per_message = Message(policy=_POLICY)
    per_message["Reporting-MTA"] = f"dns; {hostname}"
    if queue_id:
        per_message["X-Caducee-Queue-ID"] = queue_id
    per_message["Arrival-Date"] = format_datetime(arrival)
    blocks: list[Message | str] = [per_message]
    for f in failed:
        block = Message(policy=_POLICY)
        block["Final-Recipient"] = f"{_address_type(f.recipient)}; {f.recipient}"
        block["Action"] = "failed"
        block["Status"] = f.status
        if f.remote_mta:
            block["Remote-MTA"] = f"dns; {f.remote_mta}"
        if f.smtp_reply:
            block["Diagnostic-Code"] = f"smtp; {_clean(f.smtp_reply)}"
        elif f.explanation:
            block["X-Caducee-Diagnostic"] = _clean(f.explanation)
        if f.last_attempt is not None:
            block["Last-Attempt-Date"] = format_datetime(f.last_attempt)
        blocks.append(block)
    status.set_payload(blocks)
    outer.attach(status)

    headers = Message(policy=_POLICY)
    text = header_block(original).decode("utf-8", "replace")
    if text.isascii():
        headers["Content-Type"] = "text/rfc822-headers"
        headers.set_payload(text)
    else:
        headers.set_payload(text, "utf-8")
        headers.replace_header("Content-Type", 'text/rfc822-headers; charset="utf-8"')
    outer.attach(headers)
    return outer.as_bytes(policy=_POLICY)
