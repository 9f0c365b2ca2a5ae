"""Header recognition and the two column lists (DOMAIN.md §4)."""

from __future__ import annotations

import pytest

from directory.formats import (
    MAILBOX_COLUMNS,
    PERSON_COLUMNS,
    FileKind,
    HeaderError,
    normalise_header,
    parse_header,
)


def test_column_counts() -> None:
    assert len(PERSON_COLUMNS) == 52
    assert len(MAILBOX_COLUMNS) == 31


def test_canonical_headers_are_recognised() -> None:
    h = parse_header("|".join(PERSON_COLUMNS) + "|")
    assert h.kind is FileKind.PERSON and h.canonical and h.width == 53
    m = parse_header("|".join(MAILBOX_COLUMNS) + "|\r\n")
    assert m.kind is FileKind.MAILBOX and m.canonical and m.width == 32


def test_header_variants_are_normalised() -> None:
    variant = [c.replace("(structure)", "(Structure)").upper() for c in PERSON_COLUMNS]
    h = parse_header("\ufeff" + " | ".join(variant) + "|")
    assert h.kind is FileKind.PERSON and h.canonical
    assert normalise_header(" Prénom  d’exercice ") == "prenom d'exercice"


def test_reordered_and_extra_columns() -> None:
    cols = list(MAILBOX_COLUMNS)
    cols[0], cols[1] = cols[1], cols[0]
    h = parse_header("|".join([*cols, "Colonne future"]) + "|")
    assert h.kind is FileKind.MAILBOX and not h.canonical
    assert h.positions[:2] == (1, 0)
    assert h.unknown == ("Colonne future",)


def test_missing_column_names_it() -> None:
    cols = [c for c in PERSON_COLUMNS if c != "Code profession"]
    with pytest.raises(HeaderError) as exc:
        parse_header("|".join(cols) + "|")
    assert exc.value.column == "Code profession"


def test_not_an_extract() -> None:
    with pytest.raises(HeaderError):
        parse_header("nom;prenom;adresse")
