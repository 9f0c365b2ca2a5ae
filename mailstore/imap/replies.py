"""Policy reasons → IMAP replies (ARCHITECTURE.md §6; response codes of RFC 5530).

One table, as Postfix's ``cleanup_strerror.c``: handlers raise :func:`refusal` with a
:class:`~policy.decision.Reason` and never spell a status or code themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstore.imap.errors import CommandNo
from policy.decision import Reason


@dataclass(frozen=True, slots=True)
class ImapReply:
    status: bytes
    code: bytes | None
    text: str


REPLIES: dict[Reason, ImapReply] = {
    Reason.TLS_REQUIRED: ImapReply(b"NO", b"PRIVACYREQUIRED", "Use STARTTLS or port 993 first"),
    Reason.AUTH_REQUIRED: ImapReply(b"NO", b"AUTHENTICATIONFAILED", "Log in first"),
    Reason.AUTH_FAILED: ImapReply(
        b"NO", b"AUTHENTICATIONFAILED", "Authentication failed: wrong user name or password"
    ),
    Reason.RATE_LIMITED: ImapReply(
        b"NO", b"UNAVAILABLE", "Too many failed attempts, try again later"
    ),
    Reason.MESSAGE_TOO_LARGE: ImapReply(b"NO", b"TOOBIG", "Message size exceeds the limit"),
    Reason.ATTACHMENT_TYPE_REFUSED: ImapReply(
        b"NO", b"CANNOT", "Attachment type not accepted"
    ),
    Reason.STORAGE_UNAVAILABLE: ImapReply(
        b"NO", b"UNAVAILABLE", "Temporary failure, try again"
    ),
    Reason.PATIENT_NOT_CONTACTED: ImapReply(
        b"NO", b"NOPERM", "A patient may only write to a professional who wrote to them first"
    ),
    Reason.UNKNOWN_RECIPIENT: ImapReply(b"NO", b"NONEXISTENT", "No such mailbox"),
}

#: What a patient sees when trying IMAP (they use the webmail; DOMAIN.md §5). French:
#: shown to a patient by their mail client.
PATIENT_LOGIN_REFUSED = ImapReply(
    b"NO",
    b"AUTHORIZATIONFAILED",
    "Les comptes patients se consultent dans la messagerie web de Mon espace sante, pas en IMAP",
)
ACCOUNT_DISABLED = ImapReply(b"NO", b"AUTHORIZATIONFAILED", "This account is disabled")
#: APPEND by a patient account, should one ever be authenticated (a second guard behind
#: the login refusal): a message a patient planted in their own mailbox would read as
#: received mail. French, ASCII only (RFC 3501 resp-text).
PATIENT_APPEND_REFUSED = ImapReply(
    b"NO",
    b"NOPERM",
    "Un compte patient ne peut pas deposer de message en IMAP: ecrivez depuis la messagerie web",
)


def refusal(reason: Reason, detail: str = "") -> CommandNo:
    """The ``NO`` a handler raises for a policy refusal."""
    reply = REPLIES.get(reason)
    if reply is None:
        return CommandNo(f"Refused ({reason.value})", b"CANNOT")
    text = f"{reply.text}: {detail}" if detail else reply.text
    return CommandNo(text, reply.code)
