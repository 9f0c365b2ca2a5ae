"""The IMAP reason → reply table (mailstore/imap/replies.py) is ARCHITECTURE.md §6's IMAP
column; every reply is a ``NO`` with an RFC 5530 response code and a text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailstore.imap.replies import (
    ACCOUNT_DISABLED,
    PATIENT_LOGIN_REFUSED,
    REPLIES,
    ImapReply,
    refusal,
)
from policy.decision import Reason

#: ARCHITECTURE.md §6, column "IMAP / web", the rows that name an IMAP reply.
ARCHITECTURE_6: dict[Reason, tuple[bytes, bytes]] = {
    Reason.TLS_REQUIRED: (b"NO", b"PRIVACYREQUIRED"),
    Reason.AUTH_FAILED: (b"NO", b"AUTHENTICATIONFAILED"),
    Reason.RATE_LIMITED: (b"NO", b"UNAVAILABLE"),
    Reason.MESSAGE_TOO_LARGE: (b"NO", b"TOOBIG"),
    Reason.STORAGE_UNAVAILABLE: (b"NO", b"UNAVAILABLE"),
}

#: Reasons §6 leaves blank for IMAP that the IMAP server can still meet (APPEND goes
#: through the attachment policy; LOGIN needs an account), with the code they get.
BEYOND_6: dict[Reason, tuple[bytes, bytes]] = {
    Reason.AUTH_REQUIRED: (b"NO", b"AUTHENTICATIONFAILED"),
    Reason.ATTACHMENT_TYPE_REFUSED: (b"NO", b"CANNOT"),
    Reason.PATIENT_NOT_CONTACTED: (b"NO", b"NOPERM"),
    Reason.UNKNOWN_RECIPIENT: (b"NO", b"NONEXISTENT"),
}

#: Response codes of RFC 5530 §3 (TOOBIG: RFC 4469 / RFC 7889).
RFC_5530 = {
    b"UNAVAILABLE", b"AUTHENTICATIONFAILED", b"AUTHORIZATIONFAILED", b"EXPIRED",
    b"PRIVACYREQUIRED", b"CONTACTADMIN", b"NOPERM", b"INUSE", b"EXPUNGEISSUED", b"CORRUPTION",
    b"SERVERBUG", b"CLIENTBUG", b"CANNOT", b"LIMIT", b"OVERQUOTA", b"ALREADYEXISTS",
    b"NONEXISTENT", b"TOOBIG",
}


def test_table_is_architecture_section_6() -> None:
    assert {r: (v.status, v.code) for r, v in REPLIES.items()} == ARCHITECTURE_6 | BEYOND_6
    for reason, (status, code) in ARCHITECTURE_6.items():
        exc = refusal(reason, "detail")
        assert (exc.status, exc.code) == (status, code)
        assert exc.text == f"{REPLIES[reason].text}: detail"


def test_every_reply_is_a_no_with_an_rfc5530_code_and_a_text() -> None:
    for reply in [*REPLIES.values(), PATIENT_LOGIN_REFUSED, ACCOUNT_DISABLED]:
        assert isinstance(reply, ImapReply)
        assert reply.status == b"NO" and reply.code in RFC_5530, reply
        assert reply.text and "\r" not in reply.text and "\n" not in reply.text


def test_a_reason_without_an_imap_reply_is_a_plain_refusal() -> None:
    unmapped = set(Reason) - set(REPLIES) - {Reason.OK}
    assert unmapped == {
        Reason.SENDER_NOT_OWNED, Reason.SENDER_NOT_REFERENCED, Reason.DOMAIN_NOT_TRUSTED,
        Reason.RELAY_DENIED, Reason.DKIM_FAILED,
    }
    for reason in unmapped:
        exc = refusal(reason)
        assert (exc.status, exc.code, exc.text) == (b"NO", b"CANNOT", f"Refused ({reason.value})")


_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "ARCHITECTURE.md"


@pytest.mark.skipif(not _SHARED.exists(), reason="the shared design notes are not beside the repo")
def test_copy_above_is_the_design_document() -> None:
    """The table above is copied from ARCHITECTURE.md §6; if the design changes, so must it."""
    section = _SHARED.read_text(encoding="utf-8").split("## 6.", 1)[1].split("\n## ", 1)[0]
    found: dict[Reason, tuple[bytes, bytes]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        m = re.match(r"`(\w+)`", cells[0])
        imap = re.search(r"IMAP `(NO|BAD) \[([A-Z-]+)\]`", cells[-1]) if m else None
        if m and imap:
            found[Reason(m.group(1))] = (imap.group(1).encode(), imap.group(2).encode())
    assert found == ARCHITECTURE_6
