"""INS / NIR checks (DOMAIN.md §3): 15 characters, key = 97 − (first 13 mod 97), Corsica's
``2A``/``2B`` read as 19/18. The keys below were computed by hand from that formula, not
with the code under test."""

from __future__ import annotations

import pytest

from policy.identifiers import check_ins


@pytest.mark.parametrize(
    "ins",
    [
        "279035121518989",  # 2790351215189 mod 97 = 8 → key 89
        "185052A12345633",  # 2A read as 19: 1850519123456 → key 33
        "185052B12345660",  # 2B read as 18: 1850518123456 → key 60
        "185052a12345633",  # the département letter in lower case (addresses are lower case)
        "185057512345673",
        "779035121518933",  # sex digit 7: a temporary number
    ],
)
def test_valid_ins(ins: str) -> None:
    assert check_ins(ins) is None


@pytest.mark.parametrize(
    ("ins", "problem"),
    [
        ("279035121518988", "INS key is wrong"),
        ("185052A12345634", "INS key is wrong"),
        # 2A's key under 2B, and 2A taken as "20" would give key 06: both wrong.
        ("185052B12345633", "INS key is wrong"),
        ("185052A12345606", "INS key is wrong"),
        ("479035121518989", "INS must start with the sex digit (1, 2, 3, 7 or 8)"),
        ("079035121518989", "INS must start with the sex digit (1, 2, 3, 7 or 8)"),
        ("27903512151898", "INS must be 15 characters"),
        ("2790351215189890", "INS must be 15 characters"),
        ("", "INS must be 15 characters"),
        ("２79035121518989", "INS must be 15 characters"),  # a full-width digit
        ("2790351215A8989", "INS must be digits (2A/2B allowed for the département)"),
        ("185052C12345633", "INS must be digits (2A/2B allowed for the département)"),
        ("1850572A2345633", "INS must be digits (2A/2B allowed for the département)"),
        ("2790351215189 9", "INS key must be 2 digits"),
        ("27903512151898X", "INS key must be 2 digits"),
    ],
)
def test_refused_ins(ins: str, problem: str) -> None:
    assert check_ins(ins) == problem
