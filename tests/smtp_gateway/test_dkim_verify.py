"""DKIM verification and Authentication-Results (RFC 6376, RFC 8601), with keys served by a
real DNS server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import authres
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from smtp_gateway.dkim_sign import DkimSigner
from smtp_gateway.dkim_verify import DkimVerifier, Verification, strip_forged
from smtp_gateway.mx import DnsSettings
from tests.support.mail_peers import NsdServer, txt_value

SIGNER = DkimSigner("autre.test", "s1",
                    rsa.generate_private_key(public_exponent=65537, key_size=2048))
MESSAGE = (b"From: Dr X <dr.x@autre.test>\r\nTo: a@demo.mssante.fr\r\nSubject: CR\r\n"
           b"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\nBonjour.\r\n")


@pytest.fixture(scope="module")
def verifier() -> Iterator[DkimVerifier]:
    server = NsdServer({"autre.test": [
        f"s1._domainkey IN TXT {txt_value(SIGNER.dns_record())}",
        's2._domainkey IN TXT "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKk="',
    ]}).start()
    yield DkimVerifier(DnsSettings(("127.0.0.1",), server.port, timeout=3))
    server.stop()


def test_pass_and_alignment(verifier: DkimVerifier) -> None:
    v = verifier.verify(SIGNER.sign(MESSAGE))
    assert [(r.result, r.domain, r.selector) for r in v.results] == [("pass", "autre.test", "s1")]
    assert v.passes_for({"autre.test"})
    assert v.passes_for({"cardio.autre.test"})  # relaxed alignment: a parent domain signed
    assert not v.passes_for({"other.test"})
    header = v.header("mail.demo.mssante.fr")
    parsed = authres.AuthenticationResultsHeader.parse(
        header.decode().replace("\r\n\t", " ").strip())
    assert parsed.authserv_id == "mail.demo.mssante.fr"
    assert (parsed.results[0].result, parsed.results[0].header_d) == ("pass", "autre.test")


def test_fail_none_and_errors(verifier: DkimVerifier) -> None:
    tampered = SIGNER.sign(MESSAGE).replace(b"Bonjour.", b"Bonsoir.")
    (r,) = verifier.verify(tampered).results
    assert r.result == "fail"
    assert verifier.verify(MESSAGE).results == ()
    assert b"dkim=none" in verifier.verify(MESSAGE).header("mx")
    unknown = DkimSigner("autre.test", "nokey", SIGNER.key).sign(MESSAGE)
    (r,) = verifier.verify(unknown).results
    assert r.result in ("permerror", "fail") and not Verification((r,)).passes_for(
        {"autre.test"})


def test_dns_failure_is_temperror() -> None:
    dead = DkimVerifier(DnsSettings(("127.0.0.1",), 9, timeout=0.5))
    (r,) = dead.verify(SIGNER.sign(MESSAGE)).results
    assert r.result == "temperror"


def test_forged_authentication_results_are_removed() -> None:
    raw = (b"Authentication-Results: mail.demo.mssante.fr; dkim=pass\r\n"
           b"Authentication-Results: mx.autre.test;\r\n\tdkim=pass header.d=autre.test\r\n"
           + MESSAGE)
    out = strip_forged(raw, "mail.demo.mssante.fr")
    assert b"mail.demo.mssante.fr; dkim=pass" not in out
    assert b"Authentication-Results: mx.autre.test;\r\n\tdkim=pass" in out
    assert out.endswith(MESSAGE)
