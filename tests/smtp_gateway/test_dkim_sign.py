"""DKIM signatures made with OpenSSL verify with dkimpy and with OpenDKIM (a real DNS)."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from smtp_gateway.dkim_sign import DkimSigner, generate_key, relaxed_body, relaxed_header
from tests.support.dns import run_with_dns

MESSAGE = (
    b"From: Claire Martin <claire.martin@demo.mssante.fr>\r\n"
    b"To: paul.lefevre@demo.mssante.fr\r\n"
    b"Subject: =?utf-8?q?Compte_rendu_d=27hospitalisation?=\r\n"
    b"\tsuite\r\n"
    b"Date: Wed, 25 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <abc@demo.mssante.fr>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"X-MSS-MES: FIN\r\n"
    b"\r\n"
    b"Bonjour  \t docteur,\r\n\r\nR\xc3\xa9sultats joints.\r\n\r\n\r\n"
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DkimSigner:
    path: Path = tmp_path_factory.mktemp("dkim") / "dkim.key"
    generate_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    return DkimSigner.from_pem_file(path, "demo.mssante.fr", "caducee")


def test_relaxed_canonicalisation_rfc6376_examples() -> None:
    # RFC 6376 §3.4.5 example.
    assert relaxed_header(b"A", b" X") == b"a:X"
    assert relaxed_header(b"B ", b" Y\t\r\n\tZ  ") == b"b:Y Z"
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert relaxed_body(b"") == b""
    assert relaxed_body(b"\r\n\r\n") == b""


def test_dkimpy_verifies(signer: DkimSigner) -> None:
    signed = signer.sign(MESSAGE)
    record = signer.dns_record().encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    # Any change to the body or a signed header breaks it; adding a From breaks it too.
    tampered = signed.replace(b"joints", b"jointS")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: record)
    extra_from = signed.replace(b"\r\n\r\nBonjour", b"\r\nFrom: evil@x.org\r\n\r\nBonjour")
    assert not dkim.verify(extra_from, dnsfunc=lambda name, timeout=5: record)


def test_opendkim_verifies_through_real_dns(signer: DkimSigner) -> None:
    signed = signer.sign(MESSAGE)
    records = {"caducee._domainkey": signer.dns_record()}
    ok = run_with_dns("demo.mssante.fr", records, ["opendkim-testmsg"], signed)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_with_dns("demo.mssante.fr", records, ["opendkim-testmsg"],
                       signed.replace(b"joints", b"jointS"))
    assert bad.returncode != 0
