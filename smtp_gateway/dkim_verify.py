"""DKIM verification of inbound mail (RFC 6376 §6) with dkimpy, recorded in an
``Authentication-Results`` field (RFC 8601) built with ``authres``.

* Every ``DKIM-Signature`` (at most ``max_signatures``) is verified; each gives ``pass``,
  ``fail``, ``neutral`` (an unusable signature), ``permerror`` or ``temperror`` (a DNS
  failure, RFC 8601 §2.7.1).
* The public keys are fetched with *our* resolver settings (``[outbound] dns_nameservers``),
  through dkimpy's ``dnsfunc`` hook: the tests point it at a DNS server on loopback.
* A signature *counts for the sender* when it passes and its ``d=`` is the domain of the
  envelope sender or of the ``From:`` field, or a parent of it (relaxed alignment as in
  RFC 7489 §3.1.1, without a public-suffix list: ``d=`` needs two labels at least).
* :func:`strip_forged` removes ``Authentication-Results`` fields that claim our
  authserv-id before ours is added (RFC 8601 §5).

Verification is CPU work (RSA in pure Python, ~1 ms a signature) and blocking DNS: run it
in an executor.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import authres
import dkim
import dkim.util

from smtp_gateway.mx import DnsSettings, DnsTemporaryError

log = logging.getLogger(__name__)

PASS = "pass"  # noqa: S105 - a DKIM result, not a password
FAIL = "fail"
NEUTRAL = "neutral"
PERMERROR = "permerror"
TEMPERROR = "temperror"
NONE = "none"

_AR_FIELD = re.compile(rb"^authentication-results:[ \t]*(.*(?:\r\n[ \t].*)*)\r\n", re.I | re.M)
_AUTHSERV = re.compile(rb"^\s*(?:\([^)]*\)\s*)*([^\s;(]+)")


class _QuietLog:
    """dkimpy logs a peer's bad key at ERROR; for us it is a result, logged at debug."""

    def __init__(self) -> None:
        self._log = logging.getLogger(__name__ + ".dkimpy")

    def debug(self, msg: Any, *args: Any) -> None:
        self._log.debug(msg, *args)

    info = warning = error = debug


@dataclass(frozen=True, slots=True)
class SignatureResult:
    result: str
    domain: str = ""
    selector: str = ""
    identity: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Verification:
    results: tuple[SignatureResult, ...]

    def passing_domains(self) -> set[str]:
        return {r.domain for r in self.results if r.result == PASS and r.domain}

    def passes_for(self, domains: Iterable[str]) -> bool:
        """A passing signature aligned with one of the sender's ``domains``."""
        passing = self.passing_domains()
        for domain in domains:
            d = domain.lower().rstrip(".")
            if not d:
                continue
            for signer in passing:
                if signer.count(".") >= 1 and (d == signer or d.endswith("." + signer)):
                    return True
        return False

    def header(self, authserv_id: str) -> bytes:
        """The ``Authentication-Results:`` field (RFC 8601 §2.2) with CRLF."""
        results = [
            authres.DKIMAuthenticationResult(
                result=r.result,
                reason=r.reason or None,
                header_d=r.domain or None,
                header_s=r.selector or None,
                header_i=r.identity or None,
            )
            for r in self.results
        ] or [authres.DKIMAuthenticationResult(result=NONE)]
        text = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
        name, _, value = text.partition(": ")
        folded = value.replace("; ", ";\r\n\t")
        return f"{name}: {folded}\r\n".encode("utf-8", "replace")


def _tag(tags: dict[bytes, bytes], key: bytes) -> str:
    value = tags.get(key, b"")
    return re.sub(r"\s+", "", value.decode("ascii", "replace"))[:253]


def _reason(text: str) -> str:
    return re.sub(r"[\"\\\r\n]", "", text)[:120]


class DkimVerifier:
    def __init__(self, dns: DnsSettings, *, max_signatures: int = 5, minkey: int = 1024) -> None:
        self.dns = dns
        self.max_signatures = max_signatures
        self.minkey = minkey

    def verify(self, raw: bytes) -> Verification:
        """Verify every signature of ``raw`` (blocking)."""
        try:
            d = dkim.DKIM(raw, logger=_QuietLog(), minkey=self.minkey,
                          timeout=int(self.dns.timeout))
        except dkim.MessageFormatError as exc:
            return Verification((SignatureResult(PERMERROR, reason=_reason(str(exc))),))
        signatures = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
        results = []
        for idx, value in enumerate(signatures[: self.max_signatures]):
            results.append(self._one(d, idx, value))
        return Verification(tuple(results))

    def _one(self, d: dkim.DKIM, idx: int, value: bytes) -> SignatureResult:
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:
            return SignatureResult(NEUTRAL, reason="unparseable signature")
        domain, selector = _tag(tags, b"d").lower(), _tag(tags, b"s")
        identity = _tag(tags, b"i")
        temporary: list[str] = []

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            try:
                return self.dns.txt_lookup(name.decode("ascii", "replace"))
            except DnsTemporaryError as exc:
                temporary.append(str(exc))
                raise dkim.DnsTimeoutError(str(exc)) from None

        try:
            ok = d.verify(idx, dnsfunc=dnsfunc)
        except dkim.ValidationError as exc:  # body hash mismatch, bad fields
            kind = FAIL if "hash mismatch" in str(exc) else NEUTRAL
            return SignatureResult(kind, domain, selector, identity, _reason(str(exc)))
        except dkim.KeyFormatError as exc:
            return SignatureResult(PERMERROR, domain, selector, identity, _reason(str(exc)))
        except dkim.DKIMException as exc:
            return SignatureResult(PERMERROR, domain, selector, identity, _reason(str(exc)))
        if ok:
            return SignatureResult(PASS, domain, selector, identity)
        if temporary:
            return SignatureResult(TEMPERROR, domain, selector, identity, _reason(temporary[0]))
        return SignatureResult(FAIL, domain, selector, identity, "signature did not verify")


def strip_forged(raw: bytes, authserv_id: str) -> bytes:
    """Remove ``Authentication-Results`` fields naming ``authserv_id`` (RFC 8601 §5)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw
    head, rest = raw[: end + 2], raw[end + 2 :]
    ours = authserv_id.lower().encode()

    def keep(m: re.Match[bytes]) -> bytes:
        found = _AUTHSERV.match(m.group(1))
        if found and found.group(1).lower() == ours:
            return b""
        return m.group(0)

    return _AR_FIELD.sub(keep, head) + rest
