"""`caducee patient …` and `caducee trust …` on a configuration written by `caducee init`."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli import main
from tests.policy.corpus import INS_A, INS_CORSICA, make_ins
from tests.policy.test_trust_list import xml_list


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("cli") / "data"
    r = subprocess.run([sys.executable, "-m", "caducee", "init", str(d), "--port-base", "22000"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(d / "caducee.toml")


def run(cfg: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-c", cfg, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_patient_add_activate_show(cfg: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(cfg, capsys, "patient", "add", "--ins", INS_CORSICA, "--name",
                         "Jeanne Patiente", "--email", "jeanne@example.org")
    assert code == 0, err
    assert f"created patient account {INS_CORSICA.lower()}@patient.demo.mssante.fr" in out
    m = re.search(r"activation code \(shown once, valid 30 days\): (\S+)", out)
    assert m
    activation = m.group(1)

    code, _, err = run(cfg, capsys, "patient", "add", "--ins", INS_A[:-2] + "00", "--name", "X",
                       "--email", "x@example.org")
    assert code == 1 and "INS key is wrong" in err
    code, _, err = run(cfg, capsys, "patient", "add", "--ins", INS_CORSICA, "--name", "X",
                       "--email", "x@example.org")
    assert code == 1 and "already exists" in err

    code, _, err = run(cfg, capsys, "patient", "activate", "--ins", INS_CORSICA, "--code", "NOPE")
    assert code == 1 and "wrong activation code" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("un mot de passe solide\n"))
    code, out, err = run(cfg, capsys, "patient", "activate", "--ins", INS_CORSICA, "--code",
                         activation, "--password-stdin")
    assert code == 0, err
    assert "activated" in out

    code, _, err = run(cfg, capsys, "directory", "add", "mailbox", "officine@pharma.mssante.fr",
                       "--type", "ORG", "--structure", "Pharmacie du Port", "--profession", "21")
    assert code == 0, err
    code, out, err = run(cfg, capsys, "patient", "pharmacy", "grant", "--ins", INS_CORSICA,
                         "--pharmacy", "officine@pharma.mssante.fr", "--days", "30")
    assert code == 0, err
    code, out, _ = run(cfg, capsys, "patient", "show", "--ins", INS_CORSICA.lower())
    assert code == 0
    assert "state     active" in out and "notify    jeanne@example.org" in out
    assert "contact permissions: none" in out
    assert "officine@pharma.mssante.fr" in out and "until " in out
    code, _, _ = run(cfg, capsys, "patient", "pharmacy", "revoke", "--ins", INS_CORSICA,
                     "--pharmacy", "officine@pharma.mssante.fr")
    assert code == 0
    code, _, err = run(cfg, capsys, "patient", "pharmacy", "revoke", "--ins", INS_CORSICA,
                       "--pharmacy", "officine@pharma.mssante.fr")
    assert code == 1 and "no pharmacy grant in force" in err
    code, _, err = run(cfg, capsys, "patient", "show", "--ins", make_ins("2991299999999"))
    assert code == 1 and "no patient" in err


def test_pharmacy_grant_needs_a_pharmacy_of_the_directory(
    cfg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """DOMAIN.md §5: the grant is for an active ORG mailbox of a pharmacist structure only."""
    ins = make_ins("2870675123456")
    code, _, err = run(cfg, capsys, "patient", "add", "--ins", ins, "--name", "P",
                       "--email", "p@example.org")
    assert code == 0, err

    def grant(address: str) -> tuple[int, str]:
        code, _, err = run(cfg, capsys, "patient", "pharmacy", "grant", "--ins", ins,
                           "--pharmacy", address)
        return code, err

    def directory(*args: str) -> None:
        code, _, err = run(cfg, capsys, "directory", *args)
        assert code == 0, err

    code, err = grant("absente@pharma.mssante.fr")
    assert code == 1 and "not in the directory" in err
    # A structure's mailbox, but not a pharmacist's.
    directory("add", "mailbox", "accueil@clinique.mssante.fr", "--type", "ORG",
              "--structure", "Clinique", "--profession", "10")
    code, err = grant("accueil@clinique.mssante.fr")
    assert code == 1 and "not an organisational mailbox of a pharmacy" in err
    # A pharmacist's personal mailbox is not the pharmacy.
    directory("add", "mailbox", "p.pharmacien@pharma.mssante.fr", "--type", "PER",
              "--national-id", "810000000003", "--last-name", "Pharmacien",
              "--profession", "21")
    code, err = grant("p.pharmacien@pharma.mssante.fr")
    assert code == 1 and "not an organisational mailbox of a pharmacy" in err
    # The pharmacy itself: granted; once deactivated in the directory: refused.
    directory("add", "mailbox", "Officine.Gare@pharma.mssante.fr", "--type", "ORG",
              "--structure", "Pharmacie de la Gare", "--profession", "21")
    code, err = grant("officine.gare@pharma.mssante.fr")
    assert code == 0, err
    directory("deactivate", "officine.gare@pharma.mssante.fr")
    code, err = grant("officine.gare@pharma.mssante.fr")
    assert code == 1 and "no longer in the directory" in err
    code, out, _ = run(cfg, capsys, "patient", "show", "--ins", ins)
    assert code == 0
    assert out.count("officine.gare@pharma.mssante.fr") == 1  # only the first grant
    assert "accueil@clinique" not in out and "p.pharmacien" not in out


def test_patient_reissue(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(cfg, capsys, "patient", "add", "--ins", INS_A, "--name", "P",
                       "--email", "p@example.org")
    assert code == 0, err
    code, out, err = run(cfg, capsys, "patient", "reissue", "--ins", INS_A)
    assert code == 0, err
    new = out.rsplit(": ", 1)[1].strip()
    code, _, err = run(cfg, capsys, "patient", "activate", "--ins", INS_A, "--code", new)
    assert code == 0, err


def test_trust_commands(cfg: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(cfg, capsys, "trust", "add", "Clinique.MSSante.fr", "santé.mssante.fr")
    assert code == 0, err
    assert "Clinique.MSSante.fr: added" in out
    code, out, _ = run(cfg, capsys, "trust", "add", "clinique.mssante.fr")
    assert "already trusted" in out
    code, _, err = run(cfg, capsys, "trust", "add", "pas un domaine")
    assert code == 1 and "not a domain" in err

    lb = tmp_path / "lb.xml"
    lb.write_bytes(xml_list("a.mssante.fr", "b.mssante.fr", "faux domaine"))
    code, out, err = run(cfg, capsys, "trust", "import", str(lb), "--source", "listeblanche")
    assert code == 0, err
    assert "listeblanche: 2 domains (+2, -0, 0 unchanged, 1 skipped)" in out
    assert "skipped 'faux domaine'" in err
    xxe = tmp_path / "xxe.xml"
    xxe.write_bytes(b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b"<l>&x;</l>")
    code, _, err = run(cfg, capsys, "trust", "import", str(xxe))
    assert code == 1 and "forbidden XML construct" in err

    code, out, _ = run(cfg, capsys, "trust", "list")
    assert code == 0
    assert "demo.mssante.fr" in out and "(our own domain)" in out
    assert "xn--sant-epa.mssante.fr (santé.mssante.fr)" in out
    assert re.search(r"a\.mssante\.fr\s+listeblanche", out)
    assert "4 trusted domains, plus 2 of our own" in out

    code, out, err = run(cfg, capsys, "trust", "remove", "clinique.mssante.fr", "a.mssante.fr")
    assert code == 1 and "not listed by source manual: a.mssante.fr" in err
    assert "clinique.mssante.fr: removed" in out
    code, out, err = run(cfg, capsys, "trust", "remove", "a.mssante.fr", "--all-sources")
    assert code == 0, err
    code, out, _ = run(cfg, capsys, "trust", "list", "--source", "listeblanche")
    assert "b.mssante.fr" in out and "a.mssante.fr" not in out.replace("b.mssante.fr", "")
