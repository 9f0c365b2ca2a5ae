"""The journal's Ed25519 signing key: created by ``caducee init``, mode 0600.

The private key signs checkpoints; its public half (written beside it as ``<file>.pub``)
is all a verifier needs. A key is named by its *key id*: the first 16 hex digits of the
SHA-256 of the raw 32-byte public key.

Replacing the key (:func:`replace_journal_key`) keeps the old public half in the *retired
keys directory* as ``<key id>.pub``: checkpoints signed before the change still verify
(:func:`load_retired_keys`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class JournalKeyError(Exception):
    """The journal key file is missing, unreadable or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.chmod(mode)  # in case the umask narrowed it


def _new_key_pem() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    _write_new(tmp, data, mode)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_journal_key(path: Path) -> None:
    """Create a new Ed25519 key at ``path`` (PEM, PKCS#8, mode 0600) and its ``.pub``.

    Refuses to overwrite an existing key: losing it would orphan every signed checkpoint.
    """
    path = Path(path)
    if path.exists():
        raise JournalKeyError(f"{path}: a journal key already exists")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, pem = _new_key_pem()
    _write_new(path, pem, 0o600)
    pub = public_path(path)
    if pub.exists():
        pub.unlink()
    _write_new(pub, public_pem(key.public_key()).encode("ascii"), 0o644)


def load_journal_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalKeyError(f"{path}: cannot read the journal key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise JournalKeyError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise JournalKeyError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key from a PEM file holding either half of an Ed25519 key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalKeyError(f"{path}: cannot read: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        return load_journal_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise JournalKeyError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise JournalKeyError(f"{path}: not an Ed25519 key")
    return key


def key_ring(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Index public keys by key id (current and retired journal keys)."""
    return {key_id(k): k for k in keys}


def retired_key_path(retired_dir: Path, public_key: Ed25519PublicKey) -> Path:
    return Path(retired_dir) / f"{key_id(public_key)}.pub"


def retire_public_key(retired_dir: Path, public_key: Ed25519PublicKey) -> Path:
    """Keep ``public_key`` in ``retired_dir`` (idempotent); return its file."""
    retired_dir = Path(retired_dir)
    retired_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = retired_key_path(retired_dir, public_key)
    if not path.exists():
        _replace_file(path, public_pem(public_key).encode("ascii"), 0o644)
    return path


def load_retired_keys(retired_dir: Path) -> list[Ed25519PublicKey]:
    """Every ``*.pub`` of ``retired_dir`` (none when it does not exist), in name order."""
    retired_dir = Path(retired_dir)
    if not retired_dir.is_dir():
        return []
    return [load_public_key(p) for p in sorted(retired_dir.glob("*.pub"))]


@dataclass(frozen=True, slots=True)
class Replaced:
    old: Ed25519PrivateKey
    new: Ed25519PrivateKey
    retired_file: Path


def replace_journal_key(path: Path, retired_dir: Path) -> Replaced:
    """Replace the journal key at ``path`` with a new Ed25519 key.

    Crash-safe order: the old public key is first kept in ``retired_dir`` (fsynced), then
    the new private key is written beside the old one and renamed over it, then its
    ``.pub``. At every step, whatever has been signed verifies with the key file and the
    retired keys.
    """
    path = Path(path)
    old = load_journal_key(path)
    retired_file = retire_public_key(retired_dir, old.public_key())
    new, pem = _new_key_pem()
    _replace_file(path, pem, 0o600)
    _replace_file(public_path(path), public_pem(new.public_key()).encode("ascii"), 0o644)
    return Replaced(old, new, retired_file)
