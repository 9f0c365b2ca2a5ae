"""The ``From:``/``Sender:`` addresses both SMTP edges check (submission's ownership rule,
the MTA's origin and DKIM alignment rules) are the ones the IMAP ENVELOPE shows."""

from __future__ import annotations

from mailstore.mime_index import build_index
from smtp_gateway.policy_gate import header_addresses, header_addresses_by_field

RAW = (
    b"From : doctor@ours.test\r\n"  # RFC 5322 §4.5.3: white space before the colon
    b"Sender: Desk <desk@peer.test>\r\n"
    b"From: Partner <partner@peer.test>,\r\n other@peer.test\r\n"
    b"Subject: x\r\n"
    b"\r\n"
    b"From: not-a-header@body.test\r\n"
)


def test_every_field_of_the_names_in_header_order() -> None:
    assert header_addresses(RAW, "from") == [
        "doctor@ours.test", "partner@peer.test", "other@peer.test"]
    assert header_addresses(RAW, "sender") == ["desk@peer.test"]
    assert header_addresses(RAW, "from", "sender") == [
        "doctor@ours.test", "desk@peer.test", "partner@peer.test", "other@peer.test"]


def test_by_field_is_the_same_addresses_from_one_reading() -> None:
    """The MTA's origin rule takes From: and Sender: apart."""
    assert header_addresses_by_field(RAW, "from", "sender") == {
        "from": header_addresses(RAW, "from"), "sender": header_addresses(RAW, "sender")}


def test_the_author_clients_show_is_among_those_checked() -> None:
    """A field the mail store reads as ``From:`` (ENVELOPE, SEARCH) is never missed by the
    checks, however it is written."""
    shown = build_index(RAW)["headers"]["from"]
    assert shown == "doctor@ours.test"
    assert shown in header_addresses(RAW, "from")
