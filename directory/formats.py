"""The two Annuaire Santé extract formats (DOMAIN.md §4) and header recognition.

Both files are ``|``-separated with one header line, and every line ends with a trailing
``|`` (so splitting a line gives one more, empty, field than there are columns). Header
names are compared after normalisation (:func:`normalise_header`): one published variant
capitalises ``Structure``, old files were Latin-1.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

SEPARATOR = "|"

PERSON_COLUMNS: tuple[str, ...] = (
    "Type d'identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Code civilité d'exercice",
    "Libellé civilité d'exercice",
    "Code civilité",
    "Libellé civilité",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Code profession",
    "Libellé profession",
    "Code catégorie professionnelle",
    "Libellé catégorie professionnelle",
    "Code type savoir-faire",
    "Libellé type savoir-faire",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Code mode exercice",
    "Libellé mode exercice",
    "Numéro SIRET site",
    "Numéro SIREN site",
    "Numéro FINESS site",
    "Numéro FINESS établissement juridique",
    "Identifiant technique de la structure",
    "Raison sociale site",
    "Enseigne commerciale site",
    "Complément destinataire (coord. structure)",
    "Complément point géographique (coord. structure)",
    "Numéro Voie (coord. structure)",
    "Indice répétition voie (coord. structure)",
    "Code type de voie (coord. structure)",
    "Libellé type de voie (coord. structure)",
    "Libellé Voie (coord. structure)",
    "Mention distribution (coord. structure)",
    "Bureau cedex (coord. structure)",
    "Code postal (coord. structure)",
    "Code commune (coord. structure)",
    "Libellé commune (coord. structure)",
    "Code pays (coord. structure)",
    "Libellé pays (coord. structure)",
    "Téléphone (coord. structure)",
    "Téléphone 2 (coord. structure)",
    "Télécopie (coord. structure)",
    "Adresse e-mail (coord. structure)",
    "Code Département (structure)",
    "Libellé Département (structure)",
    "Ancien identifiant de la structure",
    "Autorité d'enregistrement",
    "Code secteur d'activité",
    "Libellé secteur d'activité",
    "Code section tableau pharmaciens",
    "Libellé section tableau pharmaciens",
)

MAILBOX_COLUMNS: tuple[str, ...] = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    "L2COMPLEMENTLOCALISATION structure BAL",
    "L3COMPLEMENTDISTRIBUTION structure BAL",
    "L4NUMEROVOIE structure BAL",
    "L4COMPLEMENTNUMEROVOIE structure BAL",
    "NL4TYPEVOIE structure BAL",
    "L4LIBELLEVOIE structure BAL",
    "L5LIEUDITMENTION structure BAL",
    "L6LIGNEACHEMINEMENT structure BAL",
    "Code postal structure BAL",
    "Département structure BAL",
    "Pays structure BAL",
)

assert len(PERSON_COLUMNS) == 52 and len(MAILBOX_COLUMNS) == 31


class P:
    """Positions in :data:`PERSON_COLUMNS` of the fields the importer reads."""

    ID_TYPE = 0
    ID_PP = 1
    NATIONAL_ID = 2
    CIVILITY_EX_CODE = 3
    CIVILITY_EX = 4
    CIVILITY_CODE = 5
    CIVILITY = 6
    LAST_NAME = 7
    FIRST_NAME = 8
    #: The first column of an *activity* (everything from here on describes one practice).
    ACTIVITY_START = 9
    PROFESSION = 9
    PROFESSION_LABEL = 10
    CATEGORY = 11
    SPECIALTY_TYPE = 13
    SPECIALTY = 15
    SPECIALTY_LABEL = 16
    MODE = 17
    MODE_LABEL = 18
    SIRET = 19
    SIREN = 20
    FINESS_SITE = 21
    FINESS_LEGAL = 22
    STRUCTURE_ID = 23
    SITE_NAME = 24
    SITE_BRAND = 25
    ADDRESS_FIRST = 26
    ADDRESS_LAST = 34
    POSTCODE = 35
    COMMUNE_CODE = 36
    TOWN = 37
    COUNTRY = 39
    PHONE = 40
    PHONE2 = 41
    FAX = 42
    EMAIL = 43
    DEPARTEMENT = 44
    DEPARTEMENT_LABEL = 45
    SECTOR = 48
    SECTOR_LABEL = 49


class M:
    """Positions in :data:`MAILBOX_COLUMNS` of the fields the importer reads."""

    TYPE = 0
    ADDRESS = 1
    ID_TYPE = 2
    ID_PP = 3
    NATIONAL_ID = 4
    STRUCTURE_ID_TYPE = 5
    STRUCTURE_ID = 6
    SERVICE = 7
    CIVILITY = 8
    LAST_NAME = 9
    FIRST_NAME = 10
    PROFESSION = 13
    PROFESSION_LABEL = 14
    SPECIALTY = 15
    SPECIALTY_LABEL = 16
    DEMATERIALISATION = 17
    STRUCTURE_NAME = 18
    STRUCTURE_BRAND = 19
    ADDRESS_FIRST = 20
    ADDRESS_LAST = 27
    POSTCODE = 28
    DEPARTEMENT = 29
    COUNTRY = 30


class FileKind(StrEnum):
    PERSON = "person"
    MAILBOX = "mailbox"


COLUMNS: dict[FileKind, tuple[str, ...]] = {
    FileKind.PERSON: PERSON_COLUMNS,
    FileKind.MAILBOX: MAILBOX_COLUMNS,
}

_SPACES = re.compile(r"\s+")


def normalise_header(name: str) -> str:
    """Strip, case-fold, fold accents and collapse spaces: «Structure» = «structure»."""
    t = unicodedata.normalize("NFKD", name.replace("\ufeff", "").strip().casefold())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return _SPACES.sub(" ", t.replace("\u2019", "'"))


_NORMALISED: dict[FileKind, tuple[str, ...]] = {
    kind: tuple(normalise_header(c) for c in cols) for kind, cols in COLUMNS.items()
}


@dataclass(frozen=True)
class Header:
    """A recognised header line.

    ``positions[i]`` is where the file holds canonical column ``i``. When the file has the
    canonical order (``canonical``), the importer can keep slices of the raw line as they
    are; otherwise it re-joins the fields in canonical order.
    """

    kind: FileKind
    positions: tuple[int, ...]
    #: How many fields a data line splits into (columns + the empty one after the last ``|``).
    width: int
    canonical: bool
    #: Columns present in the file that we do not know (ignored, reported once).
    unknown: tuple[str, ...]


class HeaderError(ValueError):
    """The header line is not one of the two extract formats (names the column at fault)."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def parse_header(line: str) -> Header:
    """Recognise the kind of extract from its header line (raise :class:`HeaderError`)."""
    fields = line.rstrip("\r\n").split(SEPARATOR)
    trailing = bool(fields) and fields[-1].strip() == ""
    if trailing:
        fields = fields[:-1]
    names = [normalise_header(f) for f in fields]
    index = {n: i for i, n in reversed(list(enumerate(names)))}
    best: tuple[int, FileKind] | None = None
    for kind, canon in _NORMALISED.items():
        score = sum(1 for c in canon if c in index)
        if best is None or score > best[0]:
            best = (score, kind)
    assert best is not None
    score, kind = best
    canon = _NORMALISED[kind]
    if score < len(canon) // 2:
        raise HeaderError(
            fields[0] if fields else "",
            "not an Annuaire Santé extract header (neither the person-activity nor the "
            "MSSanté mailbox format)",
        )
    for i, c in enumerate(canon):
        if c not in index:
            raise HeaderError(COLUMNS[kind][i], "column missing from the header")
    positions = tuple(index[c] for c in canon)
    known = set(canon)
    unknown = tuple(f for f, n in zip(fields, names, strict=True) if n not in known)
    canonical = positions == tuple(range(len(canon))) and len(fields) == len(canon)
    return Header(kind, positions, len(fields) + 1, canonical, unknown)
