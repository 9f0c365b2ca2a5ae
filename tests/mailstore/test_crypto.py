"""Envelope encryption: AES-256-GCM with associated data, wrapped data keys, key files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailstore.crypto import (
    DecryptionError,
    KeyFileError,
    MasterKeyring,
    aad_for,
    open_sealed,
    seal,
)


def test_seal_open_round_trip_and_binding() -> None:
    cipher = AESGCM(os.urandom(32))
    ct = seal(cipher, aad_for("blob-body", "b1", 7), b"secret body")
    assert open_sealed(cipher, aad_for("blob-body", "b1", 7), ct) == b"secret body"
    with pytest.raises(DecryptionError, match="moved from another row"):
        open_sealed(cipher, aad_for("blob-body", "b2", 7), ct)
    with pytest.raises(DecryptionError):
        open_sealed(cipher, aad_for("blob-body", "b1", 8), ct)
    flipped = bytearray(ct)
    flipped[20] ^= 1
    with pytest.raises(DecryptionError):
        open_sealed(cipher, aad_for("blob-body", "b1", 7), bytes(flipped))
    with pytest.raises(DecryptionError, match="truncated"):
        open_sealed(cipher, aad_for("blob-body", "b1", 7), ct[:10])


def test_key_file_is_private_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADUCEE_MASTER_KEY", raising=False)
    ring = MasterKeyring.generate()
    path = tmp_path / "master.key"
    ring.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = MasterKeyring.load(path)
    assert again.current_id == ring.current_id
    mk, wrapped = ring.wrap(3, b"k" * 32)
    assert again.unwrap(3, mk, wrapped) == b"k" * 32
    with pytest.raises(DecryptionError):
        again.unwrap(4, mk, wrapped)  # bound to its account


def test_rotation_ring_keeps_old_key_until_done(tmp_path: Path) -> None:
    ring = MasterKeyring.generate()
    mk, wrapped = ring.wrap(1, b"d" * 32)
    both = ring.with_new_current()
    assert both.current_id != ring.current_id
    assert both.unwrap(1, mk, wrapped) == b"d" * 32
    only = both.only_current()
    with pytest.raises(DecryptionError, match="unknown master key"):
        only.unwrap(1, mk, wrapped)


def test_bad_key_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADUCEE_MASTER_KEY", raising=False)
    with pytest.raises(KeyFileError, match="cannot read"):
        MasterKeyring.load(tmp_path / "missing")
    bad = tmp_path / "bad.key"
    bad.write_text("# header\nabc not-base64!\n")
    with pytest.raises(KeyFileError, match=r"bad.key:2"):
        MasterKeyring.load(bad)


def test_environment_variable_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    key = os.urandom(32)
    monkeypatch.setenv("CADUCEE_MASTER_KEY", base64.b64encode(key).decode())
    ring = MasterKeyring.load(tmp_path / "does-not-matter")
    assert ring.keys[ring.current_id] == key
