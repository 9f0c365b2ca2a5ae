"""Policy facts, manual edits kept as overrides across imports, journaling."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit.journal import Journal
from directory import admin, lookup
from directory.admin import AdminError, Who
from policy.directory_facts import MailboxType
from tests.directory.conftest import (
    LATER,
    Extract,
    mailbox_line,
    person_line,
    run_import,
    write_mailbox,
    write_person,
)
from tests.directory.test_import import dump

ADMIN = Who("admin@caducee.test", "web")
RPPS = "15000000016"


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> tuple[Engine, Path, Path]:
    person = write_person(tmp_path / "PS.txt", [person_line()])
    org = mailbox_line(**{"Type de BAL": "ORG", "Adresse BAL": "accueil@ch.mssante.fr",
                          "Type Identifiant PP": "", "Identifiant PP": "",
                          "Identification nationale PP": "", "Nom d'exercice": "",
                          "Prénom d'exercice": "", "Code Profession": "21",
                          "Raison Sociale structure BAL": "PHARMACIE DU CH"})
    boxes = write_mailbox(tmp_path / "BAL.txt", [mailbox_line(), org])
    run_import(engine, person, boxes)
    return engine, person, boxes


def test_lookup_facts(loaded: tuple[Engine, Path, Path]) -> None:
    engine = loaded[0]
    with engine.connect() as conn:
        m = lookup.mailbox(conn, "Helene.Lefevre@medecin.mssante.fr")
        assert m is not None
        assert (m.mailbox_type, m.national_id, m.active, m.red_list) == (
            "PER", "8" + RPPS, True, False)
        assert m.display_name == "Hélène LEFÈVRE"
        fact = m.fact()
        assert fact.mailbox_type is MailboxType.PER and fact.active
        org = lookup.mailbox(conn, "accueil@ch.mssante.fr")
        assert org is not None and org.fact().is_pharmacy
        assert lookup.mailbox(conn, "nobody@ch.mssante.fr") is None

        addr = "helene.lefevre@medecin.mssante.fr"
        assert lookup.is_referenced_active(conn, addr)
        assert lookup.is_referenced_active(conn, addr, "8" + RPPS)
        assert lookup.is_referenced_active(conn, addr, RPPS)
        assert not lookup.is_referenced_active(conn, addr, "815000000024")
        assert not lookup.is_referenced_active(conn, addr, "garbage")
        assert lookup.is_referenced_active(conn, "accueil@ch.mssante.fr", "815000000024")
        assert not lookup.is_referenced_active(conn, "nobody@ch.mssante.fr")

        p = lookup.practitioner(conn, RPPS)
        assert p is not None
        assert (p.display_name, p.profession, p.active) == (
            "Docteur Hélène LEFÈVRE", "Médecin", True)
        assert lookup.practitioner(conn, "815000000024") is None


#: Someone else, alone in a later extract: everything else leaves it (an extract with no
#: line at all is refused).
_OTHER_PERSON = person_line(**{"Identifiant PP": "15000000099",
                               "Identification nationale PP": "815000000099",
                               "Nom d'exercice": "AUTRE"})
_OTHER_MAILBOX = mailbox_line(**{"Adresse BAL": "claire.autre@medecin.mssante.fr",
                                 "Identifiant PP": "15000000099",
                                 "Identification nationale PP": "815000000099",
                                 "Nom d'exercice": "AUTRE", "Prénom d'exercice": "Claire"})


def test_deactivations_and_delta_reach_the_policy_facts(
    loaded: tuple[Engine, Path, Path], tmp_path: Path
) -> None:
    engine, person, boxes = loaded
    addr = "helene.lefevre@medecin.mssante.fr"
    with engine.begin() as conn:
        admin.deactivate(conn, RPPS, who=ADMIN)
    with engine.connect() as conn:
        assert not lookup.is_referenced_active(conn, addr)  # practitioner inactive
    # an import that still lists her does not undo the manual deactivation
    run_import(engine, person, boxes, now=LATER)
    with engine.connect() as conn:
        assert not lookup.is_referenced_active(conn, addr)
        assert not lookup.practitioner(conn, RPPS).active  # type: ignore[union-attr]
    with engine.begin() as conn:
        admin.reactivate(conn, RPPS, who=ADMIN)
    with engine.connect() as conn:
        assert lookup.is_referenced_active(conn, addr)
    # the mailbox leaves the extract (which lists only someone else now): inactive, kept
    other = write_mailbox(tmp_path / "BAL2.txt", [_OTHER_MAILBOX])
    res = run_import(engine, other, now=LATER)
    assert res.merge.mailboxes.deactivated == 2
    with engine.connect() as conn:
        m = lookup.mailbox(conn, addr)
        assert m is not None and not m.active
        assert not lookup.is_referenced_active(conn, addr)


def test_manual_edits_survive_imports_and_disagreements_are_reported(
    loaded: tuple[Engine, Path, Path], tmp_path: Path
) -> None:
    engine, person, boxes = loaded
    with engine.begin() as conn:
        admin.edit_practitioner(conn, RPPS, {"last_name": "LEFÈVRE-MARTIN"}, who=ADMIN)
        admin.edit_mailbox(conn, "accueil@ch.mssante.fr",
                           {"structure_name": "PHARMACIE CENTRALE DU CH", "red_list": True},
                           who=ADMIN)
    report = tmp_path / "report.txt"
    res = run_import(engine, person, boxes, now=LATER, report_path=report)
    found = sorted((d.kind, d.field, d.imported, d.kept) for d in res.merge.disagreements)
    assert found == [
        ("mailbox", "red_list", "published", "red list"),
        ("mailbox", "structure_name", "PHARMACIE DU CH", "PHARMACIE CENTRALE DU CH"),
        ("practitioner", "last_name", "LEFÈVRE", "LEFÈVRE-MARTIN"),
    ]
    body = report.read_text(encoding="utf-8")
    assert ("practitioner 815000000016: field «last_name»: the import says «LEFÈVRE», the "
            "manual value «LEFÈVRE-MARTIN» is kept (set by admin@caducee.test") in body
    with engine.connect() as conn:
        p = lookup.practitioner(conn, RPPS)
        assert p is not None and p.last_name == "LEFÈVRE-MARTIN"
        m = lookup.mailbox(conn, "accueil@ch.mssante.fr")
        assert m is not None and m.red_list and m.display_name == "PHARMACIE CENTRALE DU CH"
        details = admin.show(conn, RPPS)
    assert isinstance(details, admin.PractitionerDetails)
    assert details.overrides["last_name"]["by"] == "admin@caducee.test"
    assert details.overrides["last_name"]["imported"] == "LEFÈVRE"
    assert details.fields["Nom d'exercice"] == "LEFÈVRE-MARTIN"
    # dropping the override lets the extract's value apply again
    with engine.begin() as conn:
        admin.edit_practitioner(conn, RPPS, {"last_name": None}, who=ADMIN)
    with engine.connect() as conn:
        assert lookup.practitioner(conn, RPPS).last_name == "LEFÈVRE"  # type: ignore[union-attr]
    # a second import with nothing new changes nothing and still reports the mailbox
    again = run_import(engine, person, boxes, now=LATER)
    assert [d.field for d in again.merge.disagreements] == ["red_list", "structure_name"]
    assert again.merge.mailboxes.changed == 0


def test_add_show_and_journal(engine: Engine, db_url: str) -> None:
    journal = Journal(None)
    with engine.begin() as conn:
        p = admin.add_practitioner(
            conn, national_id="15000000024", last_name="BERNARD", first_name="Sophie",
            profession="60", town="Bordeaux", postcode="33000", departement="33",
            who=ADMIN, journal=journal,
        )
        assert p.display_name == "Sophie BERNARD" and p.profession == "Infirmier"
        m = admin.add_mailbox(
            conn, address="Sophie.Bernard@demo.mssante.fr", mailbox_type="per",
            national_id="15000000024", who=ADMIN, journal=journal,
        )
        assert m.address == "sophie.bernard@demo.mssante.fr" and m.active
        with pytest.raises(AdminError, match="existe déjà"):
            admin.add_mailbox(conn, address="sophie.bernard@demo.mssante.fr",
                              mailbox_type="PER", national_id="15000000024", who=ADMIN)
        with pytest.raises(AdminError, match="Identifiant invalide"):
            admin.add_practitioner(conn, national_id="15000000025", last_name="X",
                                   profession="10", who=ADMIN)
        with pytest.raises(AdminError, match="exige l'identifiant"):
            admin.add_mailbox(conn, address="a@demo.mssante.fr", mailbox_type="PER", who=ADMIN)
        with pytest.raises(AdminError, match="non modifiable"):
            admin.edit_practitioner(conn, "15000000024", {"rpps": "x"}, who=ADMIN)
    with engine.connect() as conn:
        assert lookup.is_referenced_active(conn, "sophie.bernard@demo.mssante.fr", "15000000024")
        details = admin.show(conn, "sophie.bernard@demo.mssante.fr")
        assert isinstance(details, admin.MailboxDetails)
        assert details.entry.source == "manual"
        rows = conn.execute(text(
            "SELECT action, actor, protocol, object_ids FROM audit_entry ORDER BY seq")).all()
    assert [(r.action, r.actor, r.protocol) for r in rows] == [
        ("directory.edited", "admin@caducee.test", "web")] * 2
    assert "815000000024" in rows[0].object_ids and "add" in rows[0].object_ids


def test_manual_entries_are_not_retired_by_imports(
    engine: Engine, demo_extract: Extract
) -> None:
    with engine.begin() as conn:
        admin.add_practitioner(conn, national_id="15000000024", last_name="BERNARD",
                               profession="60", who=ADMIN)
        admin.add_mailbox(conn, address="ops@demo.mssante.fr", mailbox_type="APP", who=ADMIN)
    run_import(engine, demo_extract.person, demo_extract.mailbox)
    with engine.connect() as conn:
        assert lookup.practitioner(conn, "15000000024").active  # type: ignore[union-attr]
        assert lookup.is_referenced_active(conn, "ops@demo.mssante.fr")


def test_manual_deactivations_the_import_disagrees_with_are_reported(
    loaded: tuple[Engine, Path, Path], tmp_path: Path
) -> None:
    engine, person, boxes = loaded
    with engine.begin() as conn:
        admin.deactivate(conn, RPPS, who=ADMIN)
        admin.deactivate(conn, "accueil@ch.mssante.fr", who=ADMIN)
    report = tmp_path / "report.txt"
    res = run_import(engine, person, boxes, now=LATER, report_path=report)
    found = sorted((d.kind, d.key, d.field, d.imported, d.kept, d.by)
                   for d in res.merge.disagreements)
    assert found == [
        ("mailbox", "accueil@ch.mssante.fr", "active", "active", "inactive", ADMIN.actor),
        ("practitioner", "8" + RPPS, "active", "active", "inactive", ADMIN.actor),
    ]
    body = report.read_text(encoding="utf-8")
    assert "Manual edits kept against this import (2):" in body
    assert (f"practitioner 8{RPPS}: field «active»: the import says «active», the manual "
            "value «inactive» is kept (set by admin@caducee.test on ") in body
    with engine.connect() as conn:
        assert not lookup.practitioner(conn, RPPS).active  # type: ignore[union-attr]
        assert not lookup.mailbox(conn, "accueil@ch.mssante.fr").active  # type: ignore[union-attr]
        shown = admin.show(conn, RPPS)
    assert shown.overrides["active"]["imported"] == "active"
    # entries the import no longer lists agree with a manual deactivation: nothing to say
    other_people = write_person(tmp_path / "PS2.txt", [_OTHER_PERSON])
    other_boxes = write_mailbox(tmp_path / "BAL2.txt", [_OTHER_MAILBOX])
    quiet = run_import(engine, other_people, other_boxes, now=LATER)
    assert quiet.merge.disagreements == []


def test_main_activity_corrections_are_overrides(
    loaded: tuple[Engine, Path, Path], tmp_path: Path
) -> None:
    from directory.search import Query, search

    engine, person, boxes = loaded

    def found(**q: str) -> list[str]:
        with engine.connect() as conn:
            return [h.national_id or "" for h in search(conn, Query(**q)).hits]  # type: ignore[arg-type]

    assert found(town="Lyon", profession="10") == ["8" + RPPS]
    with engine.begin() as conn:
        entry = admin.edit_practitioner(conn, RPPS, {
            "profession": "60", "specialty_code": "", "specialty": "", "town": "Villeurbanne",
            "postcode": "69100"}, who=ADMIN)
        assert (entry.profession_code, entry.profession) == ("60", "Infirmier")
        for bad, message in (({"postcode": "691"}, "Code postal invalide"),
                             ({"profession": "77"}, "Profession inconnue"),
                             ({"departement": "6X"}, "Département invalide")):
            with pytest.raises(AdminError, match=message):
                admin.edit_practitioner(conn, RPPS, bad, who=ADMIN)
    assert found(town="Villeurbanne", profession="60") == ["8" + RPPS]
    assert found(postcode="69100") == ["8" + RPPS]
    # (her mailbox, in Lyon, keeps its own fields: only the specialty left her document)
    assert found(specialty="SM54") == []
    with engine.connect() as conn:
        (hit,) = search(conn, Query(town="Villeurbanne")).hits
        details = admin.show(conn, RPPS)
    assert hit.professions == ("Infirmier",) and hit.places[0].postcode == "69100"
    assert isinstance(details, admin.PractitionerDetails)
    main = details.activities[0].activity
    assert (main.profession, main.site.town, main.specialty) == ("Infirmier", "Villeurbanne", "")

    # the next import keeps the corrections and reports each field it disagrees with
    report = tmp_path / "report.txt"
    res = run_import(engine, person, boxes, now=LATER, report_path=report)
    assert sorted((d.field, d.imported, d.kept) for d in res.merge.disagreements) == [
        ("postcode", "69002", "69100"), ("profession", "10", "60"),
        ("specialty", "Médecine générale", ""), ("specialty_code", "SM54", ""),
        ("town", "Lyon", "Villeurbanne"),
    ]
    assert "field «town»: the import says «Lyon», the manual value «Villeurbanne»" in (
        report.read_text(encoding="utf-8"))
    assert found(town="Villeurbanne", profession="60") == ["8" + RPPS]
    # the same extract again: the same report, nothing changes
    before = dump(engine)
    same = run_import(engine, person, boxes, now=LATER)
    assert len(same.merge.disagreements) == 5 and same.merge.index == "none"
    assert dump(engine) == before
    # a later extract replaces the main activity (new phone): the corrections follow it
    moved = write_person(tmp_path / "PS2.txt", [
        person_line(**{"Téléphone (coord. structure)": "0478000000"})])
    again = run_import(engine, moved, boxes, now=LATER)
    assert again.merge.activities.added == 1 and again.merge.activities.deactivated == 1
    assert found(town="Villeurbanne", profession="60") == ["8" + RPPS]
    assert found(specialty="SM54") == []
    # dropping the corrections lets the extract speak again
    with engine.begin() as conn:
        admin.edit_practitioner(conn, RPPS, dict.fromkeys(
            ("profession", "specialty_code", "specialty", "town", "postcode")), who=ADMIN)
    assert found(town="Lyon", profession="10", specialty="SM54") == ["8" + RPPS]
    assert found(town="Villeurbanne") == []
    with engine.connect() as conn:
        assert lookup.practitioner(conn, RPPS).profession == "Médecin"  # type: ignore[union-attr]
