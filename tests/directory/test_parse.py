"""Validating extract lines: every problem named by file, line and column."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from directory import idchecks
from directory.formats import MAILBOX_COLUMNS, PERSON_COLUMNS, parse_header
from directory.issues import Issue, Severity
from directory.parse_mailbox import MailboxParser, town_of
from directory.parse_person import PersonParser
from policy.identifiers import luhn_check_digit, luhn_valid
from tests.directory.conftest import mailbox_line, person_line

PERSON_HEADER = parse_header("|".join(PERSON_COLUMNS) + "|")
MAILBOX_HEADER = parse_header("|".join(MAILBOX_COLUMNS) + "|")


def parse_person(lines: list[str], *, lenient: bool = False) -> tuple[list[tuple[Any, ...]], list[Issue]]:
    issues: list[Issue] = []
    p = PersonParser(PERSON_HEADER, "PS.txt", lenient=lenient, on_issue=issues.append)
    rows = list(p.block_rows([(2, lines)]))
    return rows, issues


def parse_mailbox(lines: list[str]) -> tuple[list[tuple[Any, ...]], list[Issue]]:
    issues: list[Issue] = []
    p = MailboxParser(MAILBOX_HEADER, "BAL.txt", lenient=False, on_issue=issues.append)
    rows = list(p.block_rows([(2, lines)]))
    return rows, issues


def test_a_real_format_line_with_accents_and_empty_fields() -> None:
    rows, issues = parse_person([person_line()])
    assert issues == []
    (seq, key, national, person_raw, names, act_key, act_raw, terms) = rows[0]
    assert (seq, key, national) == (2, 815000000016, "815000000016")
    assert person_raw.split("|")[7:9] == ["LEFÈVRE", "Hélène"]
    assert names == "lefevre helene"
    assert act_raw.count("|") == 52 - 9 - 1  # the activity columns, no trailing separator
    assert terms == "3p10 4ssm54 0tlyon 1c69002 2d69"
    assert isinstance(act_key, int)


def test_second_line_of_a_practitioner_carries_only_the_activity() -> None:
    rows, _ = parse_person([person_line(), person_line(**{"Libellé commune (coord. structure)":
                                                          "Villeurbanne"})])
    assert rows[1][2:5] == (None, None, None)
    assert rows[0][5] != rows[1][5]  # two activities, two keys


def test_error_messages_name_file_line_and_column() -> None:
    bad_luhn = person_line(**{"Identifiant PP": "15000000017",
                              "Identification nationale PP": "815000000017"})
    rows, issues = parse_person([person_line(), bad_luhn])
    assert len(rows) == 1
    assert str(issues[0]) == (
        "PS.txt:3: column «Identifiant PP»: RPPS check digit is wrong (Luhn) (15000000017)"
    )
    assert issues[0].severity is Severity.ERROR


def test_lenient_mode_reports_a_wrong_key_and_imports_the_line() -> None:
    bad_luhn = person_line(**{"Identifiant PP": "15000000017",
                              "Identification nationale PP": "815000000017"})
    rows, issues = parse_person([bad_luhn], lenient=True)
    assert len(rows) == 1
    assert issues[0].severity is Severity.WARNING


def test_malformed_values_are_errors_even_when_lenient() -> None:
    lines = [
        person_line(**{"Identifiant PP": "1234", "Identification nationale PP": "81234"}),
        person_line(**{"Type d'identifiant PP": "3"}),
        person_line(**{"Identification nationale PP": "815000000024"}),
        person_line(**{"Code profession": "77"}),
        person_line(**{"Nom d'exercice": " "}),
        person_line(**{"Numéro SIRET site": "1234"}),
        person_line(**{"Numéro FINESS site": "69ABCDEFG"}),
        person_line(**{"Type d'identifiant PP": "0", "Identifiant PP": "6900001",
                       "Identification nationale PP": "06900001"}),
        person_line(**{"Numéro SIREN site": "12345678"}),
    ]
    rows, issues = parse_person(lines, lenient=True)
    assert rows == []
    assert [(i.line, i.column) for i in issues] == [
        (2, "Identifiant PP"), (3, "Type d'identifiant PP"), (4, "Identification nationale PP"),
        (5, "Code profession"), (6, "Nom d'exercice"), (7, "Numéro SIRET site"),
        (8, "Numéro FINESS site"), (9, "Identifiant PP"), (10, "Numéro SIREN site"),
    ]
    assert all(i.severity is Severity.ERROR for i in issues)
    assert str(issues[3]).endswith("column «Code profession»: unknown profession code (77)")
    assert str(issues[7]) == "PS.txt:9: column «Identifiant PP»: ADELI must be 9 digits (6900001)"
    assert str(issues[8]) == (
        "PS.txt:10: column «Numéro SIREN site»: SIREN must be 9 digits (12345678)")


def test_adeli_and_siren_check_digits() -> None:
    adeli = "69000001" + luhn_check_digit("69000001")
    siren = "73282932" + luhn_check_digit("73282932")
    wrong_adeli = adeli[:-1] + str((int(adeli[-1]) + 1) % 10)
    wrong_siren = siren[:-1] + str((int(siren[-1]) + 1) % 10)
    good = person_line(**{"Type d'identifiant PP": "0", "Identifiant PP": adeli,
                          "Identification nationale PP": "0" + adeli,
                          "Numéro SIREN site": siren})
    bad_adeli = person_line(**{"Type d'identifiant PP": "0", "Identifiant PP": wrong_adeli,
                               "Identification nationale PP": "0" + wrong_adeli})
    bad_siren = person_line(**{"Numéro SIREN site": wrong_siren})
    rows, issues = parse_person([good, bad_adeli, bad_siren])
    assert [r[2] for r in rows] == ["0" + adeli]
    assert [str(i) for i in issues] == [
        f"PS.txt:3: column «Identifiant PP»: ADELI check digit is wrong (Luhn) ({wrong_adeli})",
        f"PS.txt:4: column «Numéro SIREN site»: SIREN check digit is wrong (Luhn) ({wrong_siren})",
    ]
    assert all(i.severity is Severity.ERROR for i in issues)
    # lenient: reported, imported
    rows, issues = parse_person([good, bad_adeli, bad_siren], lenient=True)
    assert len(rows) == 3 and [i.severity for i in issues] == [Severity.WARNING] * 2


def test_column_count_and_trailing_separator() -> None:
    line = person_line()
    rows, issues = parse_person([line[:-1], line + "extra", line.rsplit("|", 5)[0] + "|"])
    assert rows == []
    assert "every line ends with «|»" in issues[0].message
    assert issues[0].column == "Libellé section tableau pharmaciens"
    assert issues[1].message == "text after the final «|»"
    assert issues[2].line == 4 and "48 «|» separators, expected 52" in issues[2].message


def test_mailbox_lines() -> None:
    org = mailbox_line(**{"Type de BAL": "ORG", "Adresse BAL": "Secretariat@CH-Lyon.MSSante.fr",
                          "Type Identifiant PP": "", "Identifiant PP": "",
                          "Identification nationale PP": "", "Nom d'exercice": "",
                          "Prénom d'exercice": "", "Raison Sociale structure BAL": "CH DE LYON",
                          "Service de rattachement": "Cardiologie"})
    rows, issues = parse_mailbox([mailbox_line(), org,
                                  mailbox_line(**{"Type de BAL": "XYZ"}),
                                  mailbox_line(**{"Adresse BAL": "pas une adresse"}),
                                  mailbox_line(**{"Identification nationale PP": ""})])
    assert issues[0].line == 4 and issues[0].column == "Type de BAL"
    assert issues[1].line == 5 and issues[1].column == "Adresse BAL"
    assert issues[2].line == 6 and issues[2].column == "Identification nationale PP"
    per, org_row = rows
    assert per[1:5] == ("helene.lefevre@medecin.mssante.fr", "PER", 815000000016, "815000000016")
    assert org_row[1:5] == ("secretariat@ch-lyon.mssante.fr", "ORG", None, None)
    assert org_row[6] == "chdelyon cardiologie ch de lyon"
    assert "7korg" in org_row[7].split() and "0tlyon" in org_row[7].split()


def test_town_of_delivery_line() -> None:
    assert town_of("69002 LYON CEDEX 02") == "LYON"
    assert town_of("2A004 AJACCIO") == "AJACCIO"
    assert town_of("SAINT-DENIS") == "SAINT-DENIS"


@given(st.text(alphabet="0123456789", min_size=2, max_size=20))
def test_fast_luhn_agrees_with_policy(digits: str) -> None:
    assert idchecks.luhn_valid(digits) == luhn_valid(digits)


@given(st.integers(min_value=10**9, max_value=10**10 - 1))
def test_national_id_checks(n: int) -> None:
    rpps = str(n) + luhn_check_digit(str(n))
    assert idchecks.national_id("8", rpps, "8" + rpps) is None
    assert idchecks.national_id_of(rpps) == "8" + rpps
    wrong = rpps[:-1] + str((int(rpps[-1]) + 1) % 10)
    problem = idchecks.national_id("8", wrong, "8" + wrong)
    assert problem is not None and problem[1]  # a key problem: lenient-able


_IDS = st.text(alphabet="0123456789", min_size=8, max_size=15) | st.text(
    alphabet="0123456789AaBb ", max_size=15)


@given(_IDS)
def test_fast_site_checks_agree_with_the_detailed_ones(value: str) -> None:
    assert idchecks.siret_ok(value) == (idchecks.siret(value) is None)
    assert idchecks.siren_ok(value) == (idchecks.siren(value) is None)
    assert idchecks.finess_ok(value) == (idchecks.finess(value) is None)


@given(st.integers(min_value=0, max_value=99_999))
def test_la_poste_siret_rule(n: int) -> None:
    value = f"356000000{n:05d}"
    assert idchecks.siret_ok(value) == (idchecks.siret(value) is None)


def test_continuation_lines_keep_their_own_activity_record() -> None:
    """The activity record is cut after the practitioner's columns, even when a later line
    of the same practitioner spells them differently."""
    first = person_line()
    other_civility = person_line(**{"Libellé civilité d'exercice": "Docteure",
                                    "Libellé commune (coord. structure)": "Bron"})
    rows, issues = parse_person([first, other_civility, first])
    assert issues == []
    for row, line in zip(rows, (first, other_civility, first), strict=True):
        assert row[6] == "|".join(line.split("|")[9:-1])
    assert rows[1][3] is None and rows[2][3] is None  # the practitioner's columns once


def test_columns_in_another_order_give_the_same_rows() -> None:
    order = list(reversed(range(len(PERSON_COLUMNS))))
    header = parse_header("|".join(PERSON_COLUMNS[i] for i in order) + "|")
    assert not header.canonical
    lines = [person_line(), person_line(**{"Code savoir-faire": "SM57"})]
    shuffled = ["|".join(line.split("|")[i] for i in order) + "|" for line in lines]
    issues: list[Issue] = []
    p = PersonParser(header, "PS.txt", lenient=False, on_issue=issues.append)
    assert list(p.block_rows([(2, shuffled)])) == parse_person(lines)[0]
    assert issues == []
