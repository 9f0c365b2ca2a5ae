"""Configuration errors name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee import config

GOOD = """[server]
hostname = "mail.example.mssante.fr"

[domains]
professional = ["example.mssante.fr"]

[submission]
listen = ["127.0.0.1:10587"]

[policy]
max_message_size = 1048576
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "caducee.toml"
    p.write_text(text)
    return p


def test_good_file_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.submission.listen == [config.Listen("127.0.0.1", 10587)]
    assert cfg.domains.patient == "patient.example.mssante.fr"
    assert cfg.tls.cert == tmp_path / "tls" / "server.crt"
    assert cfg.database_url == f"sqlite:///{tmp_path}/caducee.db"
    assert cfg.is_local_domain("EXAMPLE.mssante.fr")


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (GOOD.replace('"127.0.0.1:10587"', '"localhost"'), 8, "submission.listen", "host:port"),
        (GOOD.replace("1048576", '"big"'), 11, "policy.max_message_size", "integer"),
        (GOOD + "\n[smtp]\nport = 1\n", 13, "smtp", "unknown section"),
        (GOOD.replace("hostname", "hostnam"), 2, "server.hostnam", "unknown key"),
        (GOOD.replace('professional = ["example.mssante.fr"]', "professional = []"), 5,
         "domains.professional", "at least one"),
        (GOOD.replace("[submission]", "[submission"), None, "-", ""),
        (GOOD + "\n[imap]\nmax_line = 65536\nautologout = 1799\n", 15, "imap.autologout",
         "RFC 3501 §5.4"),
    ],
)
def test_errors_are_located(tmp_path: Path, text: str, line: int | None, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as exc:
        config.load(path)
    err = exc.value
    assert err.file == str(path)
    if line is not None:
        assert err.line == line, str(err)
    assert err.key == key
    assert words in str(err)
    assert str(err).startswith(f"{path}:")


def test_missing_required_section(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="«domains»: required section is missing"):
        config.load(write(tmp_path, '[server]\nhostname = "x.fr"\n'))


def test_imap_autologout_of_30_minutes_or_more_is_accepted(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD + "\n[imap]\nautologout = 1800.0\n"))
    assert cfg.imap.autologout == 1800.0
