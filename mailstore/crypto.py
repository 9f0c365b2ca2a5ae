"""Encryption at rest: envelope encryption with AES-256-GCM (ARCHITECTURE.md §4).

* A **master key** (32 random bytes, in a 0600 key file written by ``caducee init``, or in
  the ``CADUCEE_MASTER_KEY`` environment variable) wraps one **data key** per account.
* Data keys encrypt message bodies, their cached metadata and documents.
* Every ciphertext carries associated data naming its purpose and its row (table, row id,
  account id), so a ciphertext copied into another row, or another account's row, fails
  to open with :class:`DecryptionError` instead of yielding the wrong plaintext.
* ``caducee keys rotate`` makes a new master key and re-wraps every data key: messages are
  never re-encrypted.

Ciphertext layout: ``0x01 || nonce (12 bytes) || AES-GCM(ciphertext || tag)``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_LEN = 12
KEY_LEN = 32
KEY_FILE_HEADER = "# caducee master keys v1: the first key is current; keep this file secret"
ENV_VAR = "CADUCEE_MASTER_KEY"


class DecryptionError(Exception):
    """A ciphertext failed authentication: tampered, truncated, or not from this row."""


class KeyFileError(Exception):
    """The master key file is missing, unreadable or malformed."""


def key_id(key: bytes) -> str:
    """A short public identifier of a key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(b"caducee-key-id" + key).hexdigest()[:16]


def aad_for(purpose: str, *parts: object) -> bytes:
    """Associated data binding a ciphertext to its purpose and row."""
    return ("caducee/" + purpose + "/v1|" + "|".join(str(p) for p in parts)).encode()


def seal(cipher: AESGCM, aad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return VERSION + nonce + cipher.encrypt(nonce, plaintext, aad)


#: Bytes a sealed value adds to its plaintext: version, nonce and GCM tag.
OVERHEAD = 1 + NONCE_LEN + 16


def _sealed_parts(data: bytes, what: str) -> tuple[bytes, memoryview]:
    """The nonce and the GCM ciphertext (with its tag) of a sealed value; the latter a
    memoryview, so a message of megabytes is not copied before it is decrypted."""
    if len(data) < OVERHEAD or data[:1] != VERSION:
        raise DecryptionError(f"{what}: not a Caducée ciphertext (truncated or unknown version)")
    return data[1 : 1 + NONCE_LEN], memoryview(data)[1 + NONCE_LEN :]


def _tampered(what: str) -> DecryptionError:
    return DecryptionError(f"{what}: authentication failed (tampered, or moved from another row)")


def open_sealed(cipher: AESGCM, aad: bytes, data: bytes, *, what: str = "ciphertext") -> bytes:
    nonce, sealed = _sealed_parts(data, what)
    try:
        return cipher.decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise _tampered(what) from None


def sealed_size(data: bytes) -> int:
    """The plaintext length of a sealed value (without opening it)."""
    return len(data) - OVERHEAD


def open_sealed_into(
    cipher: AESGCM, aad: bytes, data: bytes, out: memoryview, *, what: str = "ciphertext"
) -> None:
    """:func:`open_sealed` writing the plaintext into ``out`` (exactly
    :func:`sealed_size` bytes), e.g. straight into a response buffer. On
    :class:`DecryptionError` ``out`` holds unauthenticated bytes: the caller must drop it."""
    nonce, sealed = _sealed_parts(data, what)
    try:
        cipher.decrypt_into(nonce, sealed, aad, out)
    except InvalidTag:
        raise _tampered(what) from None


@dataclass
class MasterKeyring:
    """The master keys this process knows; the first is current (used to wrap)."""

    keys: dict[str, bytes]
    current_id: str

    @classmethod
    def generate(cls) -> MasterKeyring:
        key = secrets.token_bytes(KEY_LEN)
        return cls({key_id(key): key}, key_id(key))

    @classmethod
    def from_bytes(cls, keys: list[bytes]) -> MasterKeyring:
        if not keys:
            raise KeyFileError("no master key")
        for k in keys:
            if len(k) != KEY_LEN:
                raise KeyFileError(f"a master key must be {KEY_LEN} bytes, got {len(k)}")
        return cls({key_id(k): k for k in keys}, key_id(keys[0]))

    @classmethod
    def load(cls, path: Path) -> MasterKeyring:
        """Load from ``CADUCEE_MASTER_KEY`` if set, else from the key file."""
        env = os.environ.get(ENV_VAR)
        if env:
            return cls.from_bytes([_b64(v.strip(), ENV_VAR) for v in env.split(",") if v.strip()])
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read master key file: {exc.strerror}") from None
        keys = []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keys.append(_b64(line.split()[-1], f"{path}:{lineno}"))
        if not keys:
            raise KeyFileError(f"{path}: no key in master key file")
        return cls.from_bytes(keys)

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (current key first)."""
        order = [self.current_id] + [k for k in self.keys if k != self.current_id]
        lines = [KEY_FILE_HEADER]
        lines += [f"{kid} {base64.b64encode(self.keys[kid]).decode()}" for kid in order]
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def with_new_current(self) -> MasterKeyring:
        key = secrets.token_bytes(KEY_LEN)
        keys = {key_id(key): key, **self.keys}
        return MasterKeyring(keys, key_id(key))

    def only_current(self) -> MasterKeyring:
        return MasterKeyring({self.current_id: self.keys[self.current_id]}, self.current_id)

    def wrap(self, account_id: int, data_key: bytes) -> tuple[str, bytes]:
        cipher = AESGCM(self.keys[self.current_id])
        aad = aad_for("datakey", account_id, self.current_id)
        return self.current_id, seal(cipher, aad, data_key)

    def unwrap(self, account_id: int, master_key_id: str, wrapped: bytes) -> bytes:
        key = self.keys.get(master_key_id)
        if key is None:
            raise DecryptionError(
                f"data key of account {account_id} is wrapped by unknown master key "
                f"{master_key_id}"
            )
        aad = aad_for("datakey", account_id, master_key_id)
        return open_sealed(AESGCM(key), aad, wrapped, what=f"data key of account {account_id}")


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise KeyFileError(f"{where}: master key is not valid base64") from None


@dataclass
class DataKeyCache:
    """Unwrapped data keys by account id (unwrapping is cached: ARCHITECTURE.md §10)."""

    ring: MasterKeyring
    _ciphers: dict[int, AESGCM] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, account_id: int) -> AESGCM | None:
        return self._ciphers.get(account_id)

    def put(self, account_id: int, data_key: bytes) -> AESGCM:
        cipher = AESGCM(data_key)
        with self._lock:
            self._ciphers[account_id] = cipher
        return cipher

    def forget(self, account_id: int | None = None) -> None:
        with self._lock:
            if account_id is None:
                self._ciphers.clear()
            else:
                self._ciphers.pop(account_id, None)
