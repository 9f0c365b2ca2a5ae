"""The one-body-part fast path of ``check_message`` never hides an attachment: whenever it
says "no attachment", the full MIME walk agrees (it may only send more to the walk)."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.attachments import (
    AttachmentLimits,
    _is_attachment,
    _leaves,
    _single_body_part,
    check_message,
)

EXE = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 64

TYPE_VALUES = [
    b"text/plain", b"TEXT/PLAIN; charset=utf-8", b"text/html", b"application/pdf",
    b"text/plain; name=x.exe", b"text/plain; NAME*=utf-8''x.exe", b"text/plain (c)",
    b"multipart/mixed; boundary=b", b"application/octet-stream", b"text/plain;\r\n name=a.exe",
    b'text/plain; charset="us-ascii"',
]
DISPOSITIONS = [None, b"inline", b"attachment", b"attachment; filename=a.exe",
                b"inline; filename=photo.pdf"]
NAMES = [b"Content-Type", b"content-type", b"CONTENT-TYPE", b"Content-Type "]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    head = [b"From: a@b.fr", b"To: c@d.fr", b"Subject: x"]
    for _ in range(draw(st.integers(0, 2))):
        head.append(draw(st.sampled_from(NAMES)) + b": " + draw(st.sampled_from(TYPE_VALUES)))
    disposition = draw(st.sampled_from(DISPOSITIONS))
    if disposition is not None:
        head.append(b"Content-Disposition: " + disposition)
    body = draw(st.sampled_from([b"hello\r\n", EXE, b"--b\r\nContent-Type: application/pdf"
                                 b"\r\n\r\n%PDF-1.4\r\n--b--\r\n"]))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@settings(max_examples=300, deadline=None)
@given(messages())
def test_fast_path_never_disagrees_with_the_full_walk(raw: bytes) -> None:
    if not _single_body_part(raw):
        return
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    leaves = list(_leaves(msg, 0, AttachmentLimits(), [0]))
    assert not any(_is_attachment(p) for p in leaves), raw


def test_fast_path_examples() -> None:
    plain = b"From: a@b.fr\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour\r\n"
    assert _single_body_part(plain)
    assert _single_body_part(b"From: a@b.fr\r\n\r\nBonjour\r\n")  # RFC 2045 §5.2 default
    named = b"From: a@b.fr\r\nContent-Type: text/plain;\r\n name=x.exe\r\n\r\n" + EXE
    assert not _single_body_part(named)
    assert not check_message(named).decision.allowed
    twice = b"Content-Type: text/plain\r\nContent-Type: application/x-msdownload\r\n\r\n" + EXE
    assert not _single_body_part(twice)
    disposed = b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nx\r\n"
    assert not _single_body_part(disposed)
