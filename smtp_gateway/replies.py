"""SMTP replies: one :class:`Reply` type, named constants, and the policy-reason table.

Reply codes follow RFC 5321 §4.2; enhanced status codes RFC 3463 and RFC 2034 (every 2xx,
4xx and 5xx reply but the greeting and the EHLO lines carries one once ENHANCEDSTATUSCODES is
advertised). Constant names say code and meaning: ``R550_NO_SUCH_MAILBOX``; a test checks
each name against its numbers. ARCHITECTURE.md §6 fixes the texts of the policy replies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.decision import Reason


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def line(self, detail: str = "") -> str:
        text = f"{self.text}: {detail}" if detail else self.text
        return f"{self.code} {self.enhanced} {text}"

    def __str__(self) -> str:
        return self.line()

    @property
    def permanent(self) -> bool:
        return self.code >= 500


R220_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
R221_BYE = Reply(221, "2.0.0", "Bye")
R235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
R250_OK = Reply(250, "2.0.0", "OK")
R250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
R250_QUEUED = Reply(250, "2.0.0", "OK queued as")
R421_RATE_LIMITED = Reply(421, "4.7.0", "Too many attempts, try later")
R421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
R451_TEMPORARY = Reply(451, "4.3.0", "Temporary failure, try again")
R452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
#: A message line over 1000 octets: a content problem (RFC 3463 §3.7, X.6.0); X.5.6 is the
#: AUTH exchange's (RFC 4954 §6).
R500_LINE_TOO_LONG = Reply(500, "5.6.0", "Line too long (RFC 5321 §4.5.3.1.6)")
#: A command line over its limit (512 octets, more for some extensions: RFC 5321
#: §4.5.3.1.4): a syntax error (RFC 3463 §3.6, X.5.2).
R500_COMMAND_TOO_LONG = Reply(500, "5.5.2", "Command line too long (RFC 5321 §4.5.3.1.4)")
R501_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters")
R503_BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
R530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
R535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
#: RFC 4954 §6 535 5.7.8, for a patient's (valid) credentials: patients use the web mail.
R535_PATIENT_NO_SUBMISSION = Reply(
    535, "5.7.8", "Patient accounts cannot use SMTP submission: use the web mail"
)
R538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
R550_NO_SUCH_MAILBOX = Reply(550, "5.1.1", "No such mailbox")
R550_SENDER_NOT_REFERENCED = Reply(550, "5.7.1", "Sender is not a referenced professional")
R550_DOMAIN_NOT_TRUSTED = Reply(550, "5.7.1", "Domain is outside the trust space")
R550_PATIENT_NOT_CONTACTED = Reply(
    550, "5.7.1", "A patient may only write to a professional who wrote to them first"
)
R550_DKIM_FAILED = Reply(550, "5.7.20", "No passing DKIM signature found (RFC 7372)")
R552_MESSAGE_TOO_LARGE = Reply(552, "5.3.4", "Message size exceeds limit")
R553_SENDER_NOT_OWNED = Reply(
    553, "5.7.1", "Sender address not owned by authenticated user"
)
R554_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
R554_ATTACHMENT_REFUSED = Reply(554, "5.6.0", "Attachment type not accepted")
R554_NUL_IN_DATA = Reply(554, "5.6.0", "Message contains NUL characters")
R554_8BIT_WITHOUT_8BITMIME = Reply(
    554, "5.6.0", "8-bit data requires BODY=8BITMIME (RFC 6152)"
)
R554_BARE_CR = Reply(554, "5.6.0", "Bare CR not allowed in message (RFC 5321 §2.3.8)")

#: The SMTP edge's translation of policy reasons (ARCHITECTURE.md §6).
BY_REASON: dict[Reason, Reply] = {
    Reason.TLS_REQUIRED: R530_STARTTLS_FIRST,
    Reason.AUTH_REQUIRED: R530_AUTH_REQUIRED,
    Reason.AUTH_FAILED: R535_AUTH_FAILED,
    Reason.RATE_LIMITED: R421_RATE_LIMITED,
    Reason.SENDER_NOT_OWNED: R553_SENDER_NOT_OWNED,
    Reason.SENDER_NOT_REFERENCED: R550_SENDER_NOT_REFERENCED,
    Reason.DOMAIN_NOT_TRUSTED: R550_DOMAIN_NOT_TRUSTED,
    Reason.UNKNOWN_RECIPIENT: R550_NO_SUCH_MAILBOX,
    Reason.RELAY_DENIED: R554_RELAY_DENIED,
    Reason.PATIENT_NOT_CONTACTED: R550_PATIENT_NOT_CONTACTED,
    Reason.ATTACHMENT_TYPE_REFUSED: R554_ATTACHMENT_REFUSED,
    Reason.MESSAGE_TOO_LARGE: R552_MESSAGE_TOO_LARGE,
    Reason.DKIM_FAILED: R550_DKIM_FAILED,
    Reason.STORAGE_UNAVAILABLE: R451_TEMPORARY,
}


def for_reason(reason: Reason, detail: str = "") -> str:
    """The reply line for a refused policy decision."""
    return BY_REASON[reason].line(detail)


# -- enhanced codes for replies produced by aiosmtpd itself -------------------------------

#: aiosmtpd's own reply texts that ARCHITECTURE.md §6 words differently.
_REWRITE: tuple[tuple[re.Pattern[str], Reply], ...] = (
    (re.compile(r"^530 Must issue a STARTTLS command first"), R530_STARTTLS_FIRST),
    (re.compile(r"^552 Error: Too much mail data"), R552_MESSAGE_TOO_LARGE),
    (re.compile(r"^552 Error: message size exceeds"), R552_MESSAGE_TOO_LARGE),
    (re.compile(r"^500 Line too long"), R500_LINE_TOO_LONG),
    (re.compile(r"^500 Command line too long"), R500_COMMAND_TOO_LONG),
    (re.compile(r"^220 Ready to start TLS"), R220_READY_TLS),
    (re.compile(r"^221 Bye"), R221_BYE),
    (re.compile(r"^250 OK$"), R250_OK),
)

#: Default enhanced code by basic code (RFC 3463 §3).
_DEFAULT_ENHANCED = {
    221: "2.0.0", 235: "2.7.0", 250: "2.0.0", 251: "2.1.5", 252: "2.0.0",
    421: "4.3.0", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0", 455: "4.5.4",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
    530: "5.7.0", 534: "5.7.9", 535: "5.7.8", 538: "5.7.11",
    550: "5.0.0", 551: "5.1.6", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4",
}

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b")
_CODE = re.compile(r"^(\d{3})([ -])(.*)$", re.S)


def enhance(line: str) -> str:
    """Give an aiosmtpd reply its enhanced status code and our wording (RFC 2034 §3)."""
    for pattern, reply in _REWRITE:
        if pattern.match(line):
            return reply.line()
    if _HAS_ENHANCED.match(line):
        return line
    m = _CODE.match(line)
    if not m:
        return line
    code = int(m.group(1))
    enhanced = _DEFAULT_ENHANCED.get(code)
    if enhanced is None:  # 220 greeting, 334 challenges, 354: no enhanced code
        return line
    text = m.group(3)
    if text.startswith("Error: "):
        text = text[len("Error: ") :]
    return f"{code}{m.group(2)}{enhanced} {text}"
