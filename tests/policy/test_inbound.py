"""The From:/Sender: rules for mail from other operators, and DKIM alignment (policy/inbound.py)."""

from __future__ import annotations

import pytest

from policy.decision import Reason
from policy.domains import TrustSpace
from policy.inbound import aligned, check_dkim_alignment, check_header_origin

SPACE = TrustSpace.of(["demo.mssante.fr"], "patient.demo.mssante.fr",
                      ["autre.mssante.fr", "chu-exemple.mssante.fr", "santé.mssante.fr"])


@pytest.mark.parametrize(
    ("froms", "senders", "reason"),
    [
        (["dr@autre.mssante.fr"], [], Reason.OK),
        (["dr@AUTRE.mssante.fr", "sec@chu-exemple.mssante.fr"], ["sec@autre.mssante.fr"],
         Reason.OK),
        (["dr@xn--sant-epa.mssante.fr"], [], Reason.OK),  # IDN, A-label form
        (["dr@santé.mssante.fr"], [], Reason.OK),
        # Our own domains come through submission, never from another operator.
        (["claire.martin@demo.mssante.fr"], [], Reason.SENDER_NOT_OWNED),
        (["279035121518989@patient.demo.mssante.fr"], [], Reason.SENDER_NOT_OWNED),
        (["dr@autre.mssante.fr"], ["claire@demo.mssante.fr"], Reason.SENDER_NOT_OWNED),
        # Outside the trust space; a sub-domain of a trusted domain is not trusted by that.
        (["x@gmail.com"], [], Reason.DOMAIN_NOT_TRUSTED),
        (["dr@autre.mssante.fr", "x@gmail.com"], [], Reason.DOMAIN_NOT_TRUSTED),
        (["dr@autre.mssante.fr"], ["x@gmail.com"], Reason.DOMAIN_NOT_TRUSTED),
        (["dr@sub.autre.mssante.fr"], [], Reason.DOMAIN_NOT_TRUSTED),
        # No From: at all, or nothing usable in it.
        ([], [], Reason.DOMAIN_NOT_TRUSTED),
        ([""], [], Reason.DOMAIN_NOT_TRUSTED),
        (["undisclosed"], [], Reason.DOMAIN_NOT_TRUSTED),
        ([], ["dr@autre.mssante.fr"], Reason.DOMAIN_NOT_TRUSTED),
    ],
)
def test_header_origin(froms: list[str], senders: list[str], reason: Reason) -> None:
    decision = check_header_origin(froms, senders, space=SPACE)
    assert decision.reason is reason
    assert decision.allowed is (reason is Reason.OK)


@pytest.mark.parametrize(
    ("author", "signer", "expected"),
    [
        ("autre.mssante.fr", "autre.mssante.fr", True),
        ("AUTRE.mssante.fr.", "autre.mssante.fr", True),
        ("service.autre.mssante.fr", "autre.mssante.fr", True),  # d= a parent
        ("autre.mssante.fr", "mail.autre.mssante.fr", True),  # d= a sub-domain
        # Siblings under the shared parent: plain relaxed alignment would accept them.
        ("autre.mssante.fr", "attaquant.mssante.fr", False),
        ("a.autre.mssante.fr", "b.autre.mssante.fr", False),
        ("autre.mssante.fr", "fr", False),  # not a domain we accept, and one label
        ("autre.mssante.fr", "tre.mssante.fr", False),  # a suffix of the text, not a parent
        ("autre.mssante.fr", "", False),
    ],
)
def test_alignment(author: str, signer: str, expected: bool) -> None:
    assert aligned(author, signer) is expected


def test_every_from_domain_needs_an_aligned_pass() -> None:
    ok = check_dkim_alignment(["dr@autre.mssante.fr"], {"autre.mssante.fr"})
    assert ok.allowed
    # The envelope's domain signed, but the From: is another trusted operator's.
    other = check_dkim_alignment(["dr@chu-exemple.mssante.fr"], {"autre.mssante.fr"})
    assert (other.allowed, other.reason, other.detail) == (
        False, Reason.DKIM_FAILED, "chu-exemple.mssante.fr")
    both = check_dkim_alignment(["a@autre.mssante.fr", "b@chu-exemple.mssante.fr"],
                                {"autre.mssante.fr"})
    assert both.reason is Reason.DKIM_FAILED
    assert check_dkim_alignment(["a@autre.mssante.fr", "b@chu-exemple.mssante.fr"],
                                {"autre.mssante.fr", "chu-exemple.mssante.fr"}).allowed
    assert check_dkim_alignment(["dr@autre.mssante.fr"], set()).reason is Reason.DKIM_FAILED
    assert check_dkim_alignment([], {"autre.mssante.fr"}).reason is Reason.DKIM_FAILED
    assert check_dkim_alignment(["garbage"], {"autre.mssante.fr"}).reason is Reason.DKIM_FAILED
