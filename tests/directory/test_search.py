"""Search: accents, hyphens and spaces, filters, paging, red list; same results on both
backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from caducee.dbschema import upgrade
from directory import admin, search
from directory.search import Query, QueryError
from mailstore.db import create_db_engine
from policy.identifiers import luhn_check_digit
from tests.directory.conftest import (
    Extract,
    mailbox_line,
    person_line,
    run_import,
    write_mailbox,
    write_person,
)
from tests.support.postgres import PostgresServer


def rpps(n: int) -> str:
    base = str(1600000000 + n)
    return base + luhn_check_digit(base)


def practitioner(n: int, last: str, first: str, **extra: str) -> str:
    r = rpps(n)
    return person_line(**{"Identifiant PP": r, "Identification nationale PP": "8" + r,
                          "Nom d'exercice": last, "Prénom d'exercice": first, **extra})


def build(engine: Engine, tmp: Path) -> None:
    paris = {"Code postal (coord. structure)": "75011",
             "Libellé commune (coord. structure)": "Paris", "Code Département (structure)": "75"}
    nurse = {"Code profession": "60", "Libellé profession": "Infirmier", "Code savoir-faire": "",
             "Libellé savoir-faire": ""}
    people = [
        practitioner(1, "LEFÈVRE", "Paul", **paris, **{"Code savoir-faire": "SM04"}),
        practitioner(2, "LE FEVRE", "Anne"),
        practitioner(3, "Le-Fèvre", "Jean-Pierre", **nurse),
        practitioner(4, "LEFEBVRE", "Marc", **paris),
        practitioner(5, "MARTIN", "Claire"),
        practitioner(6, "MARTINEZ", "Zoé", **nurse, **paris),
        practitioner(7, "SAINT-ÉTIENNE", "Noël", **{
            "Libellé commune (coord. structure)": "Saint-Étienne",
            "Code postal (coord. structure)": "42000", "Code Département (structure)": "42"}),
    ]
    people += [practitioner(100 + i, "DURAND", f"Prénom{chr(65 + i)}") for i in range(25)]
    write_person(tmp / "PS.txt", people)
    boxes = [
        mailbox_line(**{"Adresse BAL": "paul.lefevre@demo.mssante.fr",
                        "Identifiant PP": rpps(1), "Identification nationale PP": "8" + rpps(1)}),
        mailbox_line(**{"Adresse BAL": "claire.martin@demo.mssante.fr",
                        "Identifiant PP": rpps(5), "Identification nationale PP": "8" + rpps(5)}),
        mailbox_line(**{"Type de BAL": "ORG", "Adresse BAL": "pharmacie.centrale@demo.mssante.fr",
                        "Type Identifiant PP": "", "Identifiant PP": "",
                        "Identification nationale PP": "", "Nom d'exercice": "",
                        "Prénom d'exercice": "", "Code Profession": "21",
                        "Raison Sociale structure BAL": "PHARMACIE CENTRALE"}),
        mailbox_line(**{"Type de BAL": "ORG", "Adresse BAL": "secret.lefevre@demo.mssante.fr",
                        "Type Identifiant PP": "", "Identifiant PP": "",
                        "Identification nationale PP": "", "Nom d'exercice": "",
                        "Prénom d'exercice": "", "Raison Sociale structure BAL": "LEFEVRE SECRET"}),
    ]
    write_mailbox(tmp / "BAL.txt", boxes)
    run_import(engine, tmp / "PS.txt", tmp / "BAL.txt")
    with engine.begin() as conn:
        admin.edit_mailbox(conn, "secret.lefevre@demo.mssante.fr", {"red_list": True},
                           who=admin.Who("admin@test"))


@pytest.fixture
def directory(engine: Engine, tmp_path: Path) -> Engine:
    build(engine, tmp_path)
    return engine


def names(engine: Engine, **q: object) -> list[str]:
    with engine.connect() as conn:
        return [h.name for h in search.search(conn, Query(**q)).hits]  # type: ignore[arg-type]


LEFEVRES = ["Docteur Anne LE FEVRE", "Docteur Jean-Pierre Le-Fèvre", "Docteur Paul LEFÈVRE"]


@pytest.mark.parametrize("typed", ["Lefèvre", "lefevre", "le fevre", "LE-FEVRE", "Le Fèvre",
                                   "lefev"])
def test_spelling_variants_find_every_lefevre(directory: Engine, typed: str) -> None:
    assert names(directory, text=typed) == LEFEVRES


def test_prefix_first_name_and_order(directory: Engine) -> None:
    assert names(directory, text="martin") == ["Docteur Claire MARTIN", "Docteur Zoé MARTINEZ"]
    assert names(directory, text="martinez zoé") == ["Docteur Zoé MARTINEZ"]
    assert names(directory, text="zoé mart") == ["Docteur Zoé MARTINEZ"]
    assert names(directory, text="mart zoé") == []  # only the last word is a prefix…
    assert names(directory, text="martinez zo") == []  # …from three letters on
    assert names(directory, text="claire martin") == ["Docteur Claire MARTIN"]
    assert names(directory, text="jean pierre") == ["Docteur Jean-Pierre Le-Fèvre"]
    assert names(directory, text="lef") == ["Docteur Marc LEFEBVRE", *LEFEVRES]


PREFIX_QUERIES = [
    {"text": "lefe"}, {"text": "lefev"}, {"text": "le fev"}, {"text": "zoé mart"},
    {"text": "durand prén"}, {"text": "mart", "postcode": "750"}, {"address": "claire.mar"},
    {"address": "paul.lefevre@demo"}, {"text": "lefevreb"}, {"text": "jean pierre le fe"},
]


def test_prefixes_expanded_into_tokens_find_the_same(
    directory: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a prefix is searched as the tokens it stands for: the same results as
    FTS5's own prefix query (with no expansion allowed, every prefix stays one)."""
    with directory.connect() as conn:
        expanded = [search.search(conn, Query(**q)) for q in PREFIX_QUERIES]  # type: ignore[arg-type]
        monkeypatch.setattr(search, "MAX_PREFIX_TOKENS", 0)
        plain = [search.search(conn, Query(**q)) for q in PREFIX_QUERIES]  # type: ignore[arg-type]
    assert [p.hits for p in expanded] == [p.hits for p in plain]
    assert any(p.hits for p in expanded) and not expanded[8].hits
    if directory.dialect.name == "sqlite":
        # only three-letter prefixes stay FTS5 prefixes (a prefix index serves them)
        assert re.findall(r'"(\w+)"\*', "".join(p.expression for p in expanded)) == ["fev"]
        # (a prefix of no token becomes the word itself, absent too, whatever the limit)
        assert all("*" in p.expression for p in plain[:8] + plain[9:])
        assert '"lefevre" OR' in expanded[0].expression or '"lefevre")' in expanded[0].expression


@pytest.mark.parametrize("backend", ["sqlite"])  # prefixes are expanded on SQLite only
def test_prefix_expansion_limits(directory: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with directory.connect() as conn:
        def rendered(text: str) -> str:
            return search.to_fts5(search.expand_prefixes(conn, search.build(Query(text=text))))

        assert rendered(text="martin") == '("martin" OR "martinez")'
        assert rendered(text="mar") == '"mar"*'  # a prefix index serves three letters
        assert rendered(text="lefevreb") == '"lefevreb"'  # no token: matches nothing
        assert rendered(text="martine") == '"martinez"'
        # a prefix repeated in spelling variants is looked up once
        calls: list[str] = []
        real = search._tokens_of

        def counting(c: Connection, t: search.Term) -> search.Expr:
            calls.append(t.token)
            return real(c, t)

        monkeypatch.setattr(search, "_tokens_of", counting)
        assert rendered(text="jean pierre lefev") == (
            '(("jean" AND "pierre" AND "lefevre") OR ("jeanpierre" AND "lefevre") '
            'OR ("jean" AND "pierrelefev") OR "jeanpierrelefev")')
        assert sorted(calls) == ["jeanpierrelefev", "lefev", "pierrelefev"]
        monkeypatch.setattr(search, "MAX_PREFIX_TOKENS", 1)
        assert rendered(text="martin") == '"martin"*'  # too many tokens: FTS5's prefix


def test_filters_combine(directory: Engine) -> None:
    assert names(directory, text="le fevre", profession="infirmier") == [LEFEVRES[1]]
    assert names(directory, profession="60", town="paris") == ["Docteur Zoé MARTINEZ"]
    assert names(directory, text="lef", postcode="75011") == [
        "Docteur Marc LEFEBVRE", "Docteur Paul LEFÈVRE"]
    assert names(directory, text="lef", departement="75", specialty="sm04") == [
        "Docteur Paul LEFÈVRE"]
    assert names(directory, town="saint etienne") == ["Docteur Noël SAINT-ÉTIENNE"]
    assert names(directory, town="saint-étienne") == ["Docteur Noël SAINT-ÉTIENNE"]
    assert names(directory, text="42000") == ["Docteur Noël SAINT-ÉTIENNE"]
    assert names(directory, identifier=rpps(5)) == ["Docteur Claire MARTIN"]
    assert names(directory, text="8" + rpps(5)) == ["Docteur Claire MARTIN"]
    assert names(directory, address="claire.mar") == ["Docteur Claire MARTIN"]
    assert names(directory, text="paul.lefevre@demo.mssante.fr") == ["Docteur Paul LEFÈVRE"]


def test_structure_mailboxes_and_red_list(directory: Engine) -> None:
    with directory.connect() as conn:
        page = search.search(conn, Query(text="pharmacie"))
    (hit,) = page.hits
    assert (hit.kind, hit.name, hit.professions) == ("mailbox", "PHARMACIE CENTRALE",
                                                     ("Pharmacien",))
    assert [m.address for m in hit.mailboxes] == ["pharmacie.centrale@demo.mssante.fr"]
    assert names(directory, mailbox_type="org") == ["PHARMACIE CENTRALE"]
    # the red-listed mailbox is never shown, whatever the query
    for q in ({"text": "secret"}, {"address": "secret"}, {"text": "lefevre"},
              {"mailbox_type": "ORG"}):
        with directory.connect() as conn:
            hits = search.search(conn, Query(**q)).hits  # type: ignore[arg-type]
        assert all(m.address != "secret.lefevre@demo.mssante.fr"
                   for h in hits for m in h.mailboxes)
    with directory.connect() as conn:
        (paul,) = search.search(conn, Query(text="paul lefevre")).hits
    assert [m.address for m in paul.mailboxes] == ["paul.lefevre@demo.mssante.fr"]
    assert paul.specialties == ("Médecine générale",) or paul.specialties == ()
    assert paul.places[0].town == "Paris"


def test_paging(directory: Engine) -> None:
    with directory.connect() as conn:
        pages = [search.search(conn, Query(text="durand", page=p, per_page=10)) for p in (1, 2, 3)]
    assert [len(p.hits) for p in pages] == [10, 10, 5]
    assert [p.has_more for p in pages] == [True, True, False]
    firsts = [h.name.split()[1] for p in pages for h in p.hits]
    assert firsts == [f"Prénom{chr(65 + i)}" for i in range(25)]


@pytest.mark.parametrize("q", [
    Query(), Query(text="   "), Query(profession="plombier"), Query(text="12345678"),
    Query(text="x", page=0), Query(text="x", per_page=500), Query(mailbox_type="XYZ"),
])
def test_bad_queries(directory: Engine, q: Query) -> None:
    with directory.connect() as conn, pytest.raises(QueryError) as exc:
        search.search(conn, q)
    assert exc.value.message_fr


def test_admin_edits_are_searchable_at_once(directory: Engine) -> None:
    with directory.begin() as conn:
        admin.edit_practitioner(conn, rpps(4), {"last_name": "LEFÈVRE-DUPONT"},
                                who=admin.Who("admin@test"))
    assert "Docteur Marc LEFÈVRE-DUPONT" in names(directory, text="dupont")
    assert names(directory, text="lefebvre") == []
    with directory.begin() as conn:
        admin.deactivate(conn, rpps(5), who=admin.Who("admin@test"))
    assert names(directory, text="claire") == []


QUERIES = [
    {"text": "lefevre"}, {"text": "le fevre"}, {"text": "lef"}, {"text": "mar"},
    {"text": "durand", "page": 2, "per_page": 7}, {"profession": "60"}, {"town": "paris"},
    {"text": "pharmacie"}, {"departement": "75"}, {"text": "75"}, {"address": "claire"},
    {"mailbox_type": "per"}, {"text": "jean pierre le fevre"},
]


def _all(engine: Engine) -> list[list[dict[str, object]]]:
    with engine.connect() as conn:
        return [[h.as_json() for h in search.search(conn, Query(**q)).hits]  # type: ignore[arg-type]
                for q in QUERIES]


def test_identical_results_on_sqlite_and_postgresql(
    pg_server: PostgresServer, tmp_path: Path, demo_extract: Extract
) -> None:
    results = []
    for url in (f"sqlite:///{tmp_path / 's.db'}", pg_server.create_database()):
        engine = create_db_engine(url)
        try:
            upgrade(engine)
            data = tmp_path / engine.dialect.name
            data.mkdir()
            build(engine, data)
            run_import(engine, demo_extract.person, demo_extract.mailbox)
            with engine.begin() as conn:
                admin.edit_practitioner(conn, "8" + rpps(2), {"first_name": "Annie"},
                                        who=admin.Who("admin@test"))
            results.append(_all(engine))
        finally:
            engine.dispose()
    assert results[0] == results[1]
    assert all(results[0][:4])
