"""The journal key: created 0600 with its public half, loaded back, never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit import keys


def test_create_and_load(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "journal.key"
    keys.create_journal_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keys.load_journal_key(path)
    pub = keys.load_public_key(keys.public_path(path))
    assert keys.key_id(pub) == keys.key_id(key.public_key())
    assert keys.key_id(keys.load_public_key(path)) == keys.key_id(pub)
    with pytest.raises(keys.JournalKeyError):
        keys.create_journal_key(path)


def test_bad_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(keys.JournalKeyError, match="cannot read"):
        keys.load_journal_key(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(keys.JournalKeyError, match="not a PEM"):
        keys.load_journal_key(junk)
