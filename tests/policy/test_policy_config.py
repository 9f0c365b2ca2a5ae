"""The `[policy]` section of the configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee.config import ConfigError, load

BASE = '[server]\nhostname = "mail.chu.mssante.fr"\n[domains]\nprofessional = ["chu.mssante.fr"]\n'


def test_defaults_when_the_section_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE, encoding="utf-8")
    section = load(path).policy
    assert section.trust_sources == [] and section.trust_ca_file is None
    assert section.max_message_size == 20 * 1024 * 1024
    assert section.max_attachment_size == 10 * 1024 * 1024
    assert section.permission_expiry_days == 0


def test_section_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + '[policy]\ntrust_sources = ["lb.xml", "https://x.example/lb.xml"]\n'
                    'trust_ca_file = "tls/ca.crt"\ntrust_refresh_seconds = 3600\n'
                    "permission_expiry_days = 90\nzip_max_ratio = 50\n", encoding="utf-8")
    section = load(path).policy
    assert section.trust_sources == ["lb.xml", "https://x.example/lb.xml"]
    assert section.trust_ca_file == tmp_path / "tls/ca.crt"
    assert section.trust_refresh_seconds == 3600.0
    assert (section.permission_expiry_days, section.zip_max_ratio) == (90, 50)


def test_bad_value_is_located(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + "[policy]\nzip_max_ratio = \"high\"\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.toml:6: key «policy\.zip_max_ratio»"):
        load(path)
