"""Domains in A-label form, the trust space, and addresses (patients' included)."""

from __future__ import annotations

import pytest

from policy.addresses import (
    AddressError,
    is_patient_address,
    normalise_address,
    parse_address,
    patient_address,
    patient_ins,
)
from policy.decision import Reason
from policy.domains import (
    DomainError,
    TrustSpace,
    check_domain_trusted,
    display_domain,
    normalise_domain,
)
from tests.policy.corpus import INS_A, INS_CORSICA


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CHU-Exemple.MSSante.fr", "chu-exemple.mssante.fr"),
        ("chu-exemple.mssante.fr.", "chu-exemple.mssante.fr"),
        ("santé.mssanté.fr", "xn--sant-epa.xn--mssant-gva.fr"),
        ("SANTÉ.MSSANTÉ.FR", "xn--sant-epa.xn--mssant-gva.fr"),
        ("xn--sant-epa.xn--mssant-gva.fr", "xn--sant-epa.xn--mssant-gva.fr"),
    ],
)
def test_normalise_domain(name: str, expected: str) -> None:
    assert normalise_domain(name) == expected


@pytest.mark.parametrize(
    "name", ["", "localhost", "a..fr", "-a.fr", "a-.fr", "[192.0.2.1]", "xn--zz.fr", "a b.fr",
             "x" * 64 + ".fr", ("a" * 60 + ".") * 5 + "fr"],
)
def test_invalid_domains(name: str) -> None:
    with pytest.raises(DomainError):
        normalise_domain(name)


def test_display_domain_round_trip() -> None:
    assert display_domain("xn--sant-epa.xn--mssant-gva.fr") == "santé.mssanté.fr"
    assert display_domain("plain.fr") == "plain.fr"


def test_trust_space_own_domains_always_trusted() -> None:
    space = TrustSpace.of(["CHU.mssante.fr"], "patient.chu.mssante.fr",
                          ["clinique.mssante.fr", "santé.mssante.fr", "not a domain"])
    assert space.trusted == {"clinique.mssante.fr", "xn--sant-epa.mssante.fr"}
    assert space.is_own("chu.mssante.fr") and space.is_own("PATIENT.chu.mssante.fr")
    assert space.is_trusted("chu.mssante.fr")
    assert space.is_trusted("Santé.mssante.fr")
    assert not space.is_trusted("sub.clinique.mssante.fr")  # exact match only
    assert not space.is_trusted("gmail.com") and not space.is_trusted("not a domain")
    assert check_domain_trusted("clinique.mssante.fr", space).allowed
    refused = check_domain_trusted("gmail.com", space)
    assert refused.reason is Reason.DOMAIN_NOT_TRUSTED and refused.detail == "gmail.com"


def test_parse_address() -> None:
    a = parse_address(" <Claire.Martin@CHU-exemple.MSSante.fr> ")
    assert str(a) == "claire.martin@chu-exemple.mssante.fr"
    assert normalise_address('"odd@local"@Santé.fr') == '"odd@local"@xn--sant-epa.fr'
    for bad in ["", "no-at", "@d.fr", "a@", "a b@d.fr", "a@d", "x" * 65 + "@d.fr", "a\x00@d.fr"]:
        with pytest.raises(AddressError):
            parse_address(bad)


def test_patient_addresses() -> None:
    domain = "patient.chu.mssante.fr"
    assert patient_address(INS_A, domain) == f"{INS_A}@{domain}"
    assert patient_address(INS_CORSICA, "Patient.CHU.mssante.fr") == f"{INS_CORSICA.lower()}@{domain}"
    assert patient_ins(f"{INS_A}@{domain}", domain) == INS_A
    assert patient_ins(f"{INS_CORSICA.lower()}@{domain}", domain) == INS_CORSICA
    assert patient_ins(f"{INS_A}@other.fr", domain) is None
    assert patient_ins(f"{INS_A[:-2]}00@{domain}", domain) is None  # wrong key
    assert patient_ins("claire@" + domain, domain) is None
    assert patient_ins(f"{INS_A}@{domain}", "") is None
    assert is_patient_address(parse_address(f"{INS_A}@{domain}"), domain)
    with pytest.raises(AddressError, match="INS key is wrong"):
        patient_address(INS_A[:-2] + "00", domain)
    with pytest.raises(AddressError):
        patient_address(INS_A, "bad domain")
