"""The demo extract in conf/demo imports cleanly and holds the demo professionals."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sqlalchemy import Engine

from directory import lookup, search
from tests.directory.conftest import run_import

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo"


def test_demo_extract_and_accounts(engine: Engine) -> None:
    res = run_import(engine, DEMO / "PS_LibreAcces_Personne_activite_demo.txt",
                     DEMO / "Extraction_Correspondance_MSSante_demo.txt")
    assert res.errors == 0 and res.warnings == 0
    assert res.merge.practitioners.added > 300
    accounts = tomllib.loads((DEMO / "demo_accounts.toml").read_text(encoding="utf-8"))["account"]
    assert {a["address"] for a in accounts} == {
        "claire.martin@demo.mssante.fr", "paul.lefevre@demo.mssante.fr",
        "sophie.bernard@demo.mssante.fr", "pharmacie.centrale@demo.mssante.fr"}
    with engine.connect() as conn:
        for a in accounts:
            assert lookup.is_referenced_active(conn, a["address"], a["national_id"]), a
            p = lookup.practitioner(conn, a["rpps"])
            assert p is not None and p.profession == a["profession"]
        assert lookup.mailbox(conn, "pharmacie.centrale@demo.mssante.fr").fact().is_pharmacy  # type: ignore[union-attr]
        (paul,) = search.search(conn, search.Query(text="le fevre paul")).hits
        assert paul.specialties == ("Cardiologie et maladies vasculaires",)
        assert paul.places[0].town == "Paris"
        (claire,) = search.search(conn, search.Query(text="claire martin", town="lyon")).hits
        assert claire.specialties == ("Médecine générale",)
