"""Reply constants say code and meaning in their names; aiosmtpd's replies get enhanced codes."""

from __future__ import annotations

import re

from policy.decision import Reason
from smtp_gateway import replies


def test_constant_names_match_their_codes() -> None:
    found = 0
    for name, value in vars(replies).items():
        if isinstance(value, replies.Reply):
            m = re.fullmatch(r"R(\d{3})_[A-Z0-9_]+", name)
            assert m, name
            assert int(m.group(1)) == value.code, name
            assert value.enhanced[0] == str(value.code)[0], name
            found += 1
    assert found > 20


def test_every_reason_has_a_reply_with_architecture_texts() -> None:
    assert set(replies.BY_REASON) == set(Reason) - {Reason.OK}
    assert replies.for_reason(Reason.UNKNOWN_RECIPIENT) == "550 5.1.1 No such mailbox"
    assert replies.for_reason(Reason.ATTACHMENT_TYPE_REFUSED, "x.exe") == (
        "554 5.6.0 Attachment type not accepted: x.exe"
    )
    assert replies.for_reason(Reason.RATE_LIMITED) == "421 4.7.0 Too many attempts, try later"


def test_enhance_aiosmtpd_replies() -> None:
    assert replies.enhance("503 Error: need MAIL command") == "503 5.5.1 need MAIL command"
    assert replies.enhance("250 OK") == "250 2.0.0 OK"
    assert replies.enhance("530 Must issue a STARTTLS command first") == (
        "530 5.7.0 Must issue a STARTTLS command first"
    )
    assert replies.enhance("552 Error: Too much mail data") == (
        "552 5.3.4 Message size exceeds limit"
    )
    assert replies.enhance("535 5.7.8 Authentication credentials invalid").count("5.7.8") == 1
    assert replies.enhance("354 End data with <CR><LF>.<CR><LF>").startswith("354 End")
    assert replies.enhance("334 VXNlcm5hbWU6") == "334 VXNlcm5hbWU6"
    assert replies.enhance("220 host Caducée ESMTP").startswith("220 host")
