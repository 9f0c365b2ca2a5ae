"""The liste blanche: XML and plain formats, IDN, and XML attacks (refused, never resolved)."""

from __future__ import annotations

import pytest

from policy.trust_list import (
    MAX_LIST_BYTES,
    TrustListError,
    parse_plain_list,
    parse_trust_list,
    parse_xml_list,
)

NS = "https://listeblanche.mssante.fr/schema"


def xml_list(*names: str, ns: str = NS) -> bytes:
    domains = "".join(f"<Domaine><Nom>{n}</Nom><Operateur>op</Operateur></Domaine>"
                      for n in names)
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListeBlanche xmlns="{ns}">'
            f"<Domaines>{domains}</Domaines></ListeBlanche>").encode()


def test_xml_list() -> None:
    parsed = parse_xml_list(xml_list("chu-exemple.mssante.fr", " Clinique.MSSante.fr ",
                                     "santé.mssante.fr", "chu-exemple.mssante.fr"))
    assert parsed.domains == ("chu-exemple.mssante.fr", "clinique.mssante.fr",
                              "xn--sant-epa.mssante.fr")
    assert parsed.rejected == ()


def test_xml_list_reports_bad_names() -> None:
    parsed = parse_xml_list(xml_list("ok.mssante.fr", "pas un domaine", ""))
    assert parsed.domains == ("ok.mssante.fr",)
    assert [r.value for r in parsed.rejected] == ["pas un domaine", ""]


def test_xml_in_another_namespace_is_refused() -> None:
    with pytest.raises(TrustListError, match="no Domaine element"):
        parse_xml_list(xml_list("a.mssante.fr", ns="urn:other"))
    with pytest.raises(TrustListError, match="no Domaine element"):
        parse_xml_list(b"<ListeBlanche><Domaine><Nom>a.fr</Nom></Domaine></ListeBlanche>")


@pytest.mark.parametrize(
    "attack",
    [
        # external entity (XXE)
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b'<ListeBlanche xmlns="' + NS.encode() + b'"><Domaine><Nom>&x;</Nom></Domaine>'
        b"</ListeBlanche>",
        # billion laughs
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<ListeBlanche xmlns="' + NS.encode() + b'"><Domaine><Nom>&b;.fr</Nom></Domaine>'
        b"</ListeBlanche>",
        # external DTD
        b'<?xml version="1.0"?><!DOCTYPE l SYSTEM "http://127.0.0.1:1/x.dtd">'
        b'<ListeBlanche xmlns="' + NS.encode() + b'"/>',
    ],
    ids=["xxe", "billion-laughs", "external-dtd"],
)
def test_xml_attacks_are_refused(attack: bytes) -> None:
    with pytest.raises(TrustListError, match="forbidden XML construct"):
        parse_trust_list(attack)


def test_malformed_xml() -> None:
    with pytest.raises(TrustListError, match="malformed XML"):
        parse_trust_list(b"<ListeBlanche><Domaine>")


def test_plain_list() -> None:
    text = ("# liste blanche\n\nchu-exemple.mssante.fr\n  clinique.mssante.fr  # commentaire\n"
            "santé.mssante.fr\nnot a domain\n").encode()
    parsed = parse_trust_list(b"\xef\xbb\xbf" + text)
    assert parsed.domains == ("chu-exemple.mssante.fr", "clinique.mssante.fr",
                              "xn--sant-epa.mssante.fr")
    assert [(r.line, r.value) for r in parsed.rejected] == [(6, "not a domain")]


def test_plain_list_must_be_utf8_and_bounded() -> None:
    with pytest.raises(TrustListError, match="not UTF-8"):
        parse_plain_list("santé.fr".encode("latin-1"))
    with pytest.raises(TrustListError, match="larger than"):
        parse_plain_list(b"a" * (MAX_LIST_BYTES + 1))
