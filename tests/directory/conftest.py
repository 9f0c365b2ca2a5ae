"""Fixtures for the directory tests: small generated extracts in the real format."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from benchmarks import gen_extract
from directory.formats import MAILBOX_COLUMNS, PERSON_COLUMNS
from directory.importer import ImportOptions, ImportResult, import_files
from mailstore.db import create_db_engine

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@dataclass
class Extract:
    person: Path
    mailbox: Path
    stats: gen_extract.Stats


@pytest.fixture(scope="session")
def demo_extract(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    """A few hundred practitioners, the demo professionals included (same as conf/demo)."""
    d = tmp_path_factory.mktemp("demo-extract")
    person, mailbox, stats = gen_extract.generate(
        d, person_lines=400, mailbox_lines=150, seed=7, demo=True, keep_ids=True
    )
    return Extract(person, mailbox, stats)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = create_db_engine(db_url)
    try:
        yield e
    finally:
        e.dispose()


def run_import(engine: Engine, *paths: Path, **options: Any) -> ImportResult:
    """Import with the test's options; no limit on deactivations unless one is given (the
    small extracts of the tests retire large shares of their directories on purpose; the
    limit has its own tests)."""
    opts = ImportOptions(now=options.pop("now", NOW), workers=options.pop("workers", 1),
                         max_deactivation=options.pop("max_deactivation", None), **options)
    return import_files(engine, list(paths), opts)


def person_line(**fields: str) -> str:
    """A valid person-activity line (a generated practitioner), with some fields replaced."""
    values = dict.fromkeys(PERSON_COLUMNS, "")
    values.update({
        "Type d'identifiant PP": "8", "Identifiant PP": "15000000016",
        "Identification nationale PP": "815000000016", "Code civilité d'exercice": "DR",
        "Libellé civilité d'exercice": "Docteur", "Nom d'exercice": "LEFÈVRE",
        "Prénom d'exercice": "Hélène", "Code profession": "10", "Libellé profession": "Médecin",
        "Code savoir-faire": "SM54", "Libellé savoir-faire": "Médecine générale",
        "Code postal (coord. structure)": "69002", "Libellé commune (coord. structure)": "Lyon",
        "Code Département (structure)": "69", "Raison sociale site": "CABINET DU PARC",
    })
    values.update(fields)
    return "|".join(values[c] for c in PERSON_COLUMNS) + "|"


def mailbox_line(**fields: str) -> str:
    values = dict.fromkeys(MAILBOX_COLUMNS, "")
    values.update({
        "Type de BAL": "PER", "Adresse BAL": "helene.lefevre@medecin.mssante.fr",
        "Type Identifiant PP": "8", "Identifiant PP": "15000000016",
        "Identification nationale PP": "815000000016", "Nom d'exercice": "LEFÈVRE",
        "Prénom d'exercice": "Hélène", "Code Profession": "10", "Libellé Profession": "Médecin",
        "L6LIGNEACHEMINEMENT structure BAL": "69002 LYON", "Code postal structure BAL": "69002",
        "Département structure BAL": "69",
    })
    values.update(fields)
    return "|".join(values[c] for c in MAILBOX_COLUMNS) + "|"


def write_person(path: Path, lines: list[str], *, encoding: str = "utf-8") -> Path:
    header = "|".join(PERSON_COLUMNS) + "|"
    path.write_text("\n".join([header, *lines]) + "\n", encoding=encoding)
    return path


def write_mailbox(path: Path, lines: list[str], *, encoding: str = "utf-8") -> Path:
    header = "|".join(MAILBOX_COLUMNS) + "|"
    path.write_text("\n".join([header, *lines]) + "\n", encoding=encoding)
    return path


def write_config(path: Path, db_url: str, directory: str = "") -> Path:
    """A configuration for ``caducee directory …`` on the test's database; ``directory``
    adds lines to its ``[directory]`` section."""
    (path.parent / "data").mkdir(exist_ok=True)
    path.write_text(
        '[server]\nhostname = "mx.caducee.test"\ndata_dir = "data"\n'
        '[domains]\nprofessional = ["demo.mssante.fr"]\n'
        f'[database]\nurl = "{db_url}"\n'
        '[directory]\nreport_dir = "reports"\nimport_workers = 1\n' + directory,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    """The path of a configuration for the CLI (:func:`write_config`)."""
    return write_config(tmp_path / "caducee.toml", db_url)
