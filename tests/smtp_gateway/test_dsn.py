"""Delivery status notifications (RFC 3464), built and parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from typing import Any

import pytest

from smtp_gateway.dsn import FailedRecipient, build_dsn, is_dsn

ORIGINAL = (
    b"From: claire.martin@demo.mssante.fr\r\nTo: dr.x@autre.mssante.fr\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sultats?=\r\nMessage-ID: <abc@demo.mssante.fr>\r\n\r\n"
    b"Secret body: glycemie\r\n"
)
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def build(**kw: object) -> bytes:
    args: dict[str, object] = {
        "original": ORIGINAL, "sender": "claire.martin@demo.mssante.fr",
        "hostname": "mail.demo.mssante.fr",
        "arrival": datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
        "failed": [FailedRecipient("dr.x@autre.mssante.fr", "5.1.1", "mx.autre.mssante.fr",
                                   "550 5.1.1 No such user")],
        "now": NOW, "queue_id": "QID123",
    }
    args.update(kw)
    return build_dsn(**args)  # type: ignore[arg-type]


def parse(raw: bytes) -> Any:
    """A parsed message (typed Any: the email package's unions get in the way of tests)."""
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_structure_parses_with_the_email_package() -> None:
    raw = build()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "claire.martin@demo.mssante.fr"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.demo.mssante.fr"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["References"] == "<abc@demo.mssante.fr>"
    assert msg["Subject"] == "Message non distribué : Résultats"
    human, status, headers = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    text = human.get_content()
    assert "n'a pas pu être distribué" in text and "<dr.x@autre.mssante.fr>" in text
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.demo.mssante.fr"
    assert per_message["Arrival-Date"] == "Wed, 25 Nov 2026 09:00:00 +0000"
    assert per_rcpt["Final-Recipient"] == "rfc822; dr.x@autre.mssante.fr"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.autre.mssante.fr"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <abc@demo.mssante.fr>" in headers.get_payload()
    assert b"glycemie" not in raw  # only the headers come back


def test_several_recipients_and_a_failure_without_smtp_reply() -> None:
    raw = build(failed=[
        FailedRecipient("a@x.test", "5.1.10", explanation="null MX (RFC 7505)"),
        FailedRecipient("b@y.test", "4.4.7", "mx.y.test", "451 4.3.0 busy",
                        last_attempt=NOW),
    ])
    msg = parse(raw)
    blocks = msg.get_payload()[1].get_payload()
    assert [b["Status"] for b in blocks[1:]] == ["5.1.10", "4.4.7"]
    assert blocks[1]["Diagnostic-Code"] is None and blocks[1]["Remote-MTA"] is None
    assert blocks[2]["Last-Attempt-Date"] == "Wed, 25 Nov 2026 09:30:00 +0000"


def test_a_dsn_is_recognised_so_none_answers_it() -> None:
    assert is_dsn(build())
    assert not is_dsn(ORIGINAL)
    assert is_dsn(b'Content-Type: multipart/report;\r\n report-type="delivery-status"; '
                  b"boundary=x\r\n\r\n")


def test_non_ascii_recipient_and_headers() -> None:
    original = "Subject: Café\r\nFrom: é@x.test\r\n\r\nx\r\n".encode()
    raw = build(original=original, failed=[FailedRecipient("jörg@autre.test", "5.1.1")])
    msg = parse(raw)
    block = msg.get_payload()[1].get_payload()[1]
    assert block["Final-Recipient"] == "utf-8; jörg@autre.test"  # RFC 6533 §3
    assert "Café" in msg.get_payload()[2].get_content()


def test_needs_a_failed_recipient() -> None:
    with pytest.raises(ValueError):
        build(failed=[])
