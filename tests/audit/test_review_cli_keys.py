"""A damaged journal key file stops the ``caducee audit`` commands with a message naming
the file (exit status 1), not with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee.cli import main


@pytest.mark.parametrize("damaged", ["journal.key", "journal-retired/0123456789abcdef.pub"])
@pytest.mark.parametrize("command", [["verify"], ["show"], ["checkpoint"], ["keys"]])
def test_damaged_key_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damaged: str, command: list[str]
) -> None:
    assert main(["init", str(tmp_path / "inst"), "--port-base", "0"]) == 0
    conf = tmp_path / "inst" / "caducee.toml"
    bad = tmp_path / "inst" / "keys" / damaged
    bad.parent.mkdir(exist_ok=True)
    bad.write_text("not a key\n", encoding="ascii")
    capsys.readouterr()
    assert main(["-c", str(conf), "audit", *command]) == 1
    err = capsys.readouterr().err
    assert "clé du journal illisible" in err and str(bad) in err
