"""Detached OpenPGP signatures on exports, with the operator key (python-gnupg).

The operator key lives in its own GnuPG home (created by ``caducee init``); it is an
Ed25519 signing key without a passphrase (the home is protected by file modes, like the
other keys). An outside auditor verifies an export with stock ``gpg`` and the operator's
public key only::

    gpg --import operator.asc
    gpg --verify export.jsonl.asc export.jsonl
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import gnupg


class ExportSigningError(Exception):
    """gpg failed, or the operator key is missing or ambiguous."""


#: gpg-agent's socket lives in the home directory; a Unix socket path is limited to 107
#: bytes, so a long home is reached through a short symlink in the temp directory.
_SOCKET_PATH_ROOM = 80


def short_home(gnupg_home: Path) -> Path:
    """``gnupg_home``, or a short symlink to it when its path is too long for a socket."""
    real = Path(gnupg_home).resolve()
    if len(str(real)) <= _SOCKET_PATH_ROOM:
        return real
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    link = Path(tempfile.gettempdir()) / f"caducee-gpg-{digest}"
    if not (link.is_symlink() and link.resolve() == real):
        _remove_dangling_links(link.parent)
        tmp = link.with_name(link.name + f".{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(real)
        tmp.replace(link)
    return link


def _remove_dangling_links(tmp_dir: Path) -> None:
    """Remove the short links whose home is gone (a removed data directory)."""
    for link in tmp_dir.glob("caducee-gpg-*"):
        if link.is_symlink() and not link.exists():
            link.unlink(missing_ok=True)


def _gpg(gnupg_home: Path) -> gnupg.GPG:
    gnupg_home = Path(gnupg_home)
    gnupg_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gnupg_home.chmod(0o700)
    return gnupg.GPG(gnupghome=str(short_home(gnupg_home)))


def create_operator_gpg_key(gnupg_home: Path, name: str, email: str) -> str:
    """Create an Ed25519 signing key (no passphrase, no expiry) in ``gnupg_home``.

    Returns its fingerprint. Runs gpg in batch mode: nothing prompts.
    """
    gpg = _gpg(gnupg_home)
    spec = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=name,
        name_email=email,
        expire_date="0",
        no_protection=True,
    )
    try:
        result = gpg.gen_key(spec)
    finally:
        stop_agent(gnupg_home)  # a one-shot use: leave no daemon behind
    fingerprint = str(result.fingerprint or "")
    if not fingerprint:
        raise ExportSigningError(f"gpg could not create the operator key: {result.stderr[-500:]}")
    return fingerprint


def operator_fingerprint(gnupg_home: Path, wanted: str = "") -> str:
    """The operator key's fingerprint: ``wanted`` if given (checked), else the only secret key."""
    keys = _gpg(gnupg_home).list_keys(secret=True)
    fprs = [str(k["fingerprint"]) for k in keys]
    if wanted:
        w = wanted.replace(" ", "").upper()
        for f in fprs:
            if f.upper().endswith(w):
                return f
        raise ExportSigningError(f"operator key {wanted} not found in {gnupg_home}")
    if len(fprs) != 1:
        raise ExportSigningError(
            f"{gnupg_home} holds {len(fprs)} secret keys: set audit.operator_key"
        )
    return fprs[0]


def export_public_key(gnupg_home: Path, fingerprint: str) -> str:
    """The operator's public key, ASCII-armored, to hand to auditors."""
    armored = _gpg(gnupg_home).export_keys(fingerprint)
    if not armored:
        raise ExportSigningError(f"cannot export public key {fingerprint}")
    return str(armored)


def sign_detached(gnupg_home: Path, path: Path, fingerprint: str = "") -> Path:
    """Write ``<path>.asc``, an armored detached signature of ``path``; return its path.

    Exports are occasional: the gpg-agent started for the signature is stopped after it.
    """
    gpg = _gpg(gnupg_home)
    fpr = operator_fingerprint(gnupg_home, fingerprint)
    out = path.with_name(path.name + ".asc")
    if out.exists():
        out.unlink()
    try:
        with path.open("rb") as f:
            result = gpg.sign_file(f, keyid=fpr, detach=True, clearsign=False, output=str(out))
    finally:
        stop_agent(gnupg_home)
    if not out.exists() or out.stat().st_size == 0:
        raise ExportSigningError(f"gpg could not sign {path}: {str(result.stderr)[-500:]}")
    return out


def verify_detached(gnupg_home: Path, path: Path, signature: Path) -> bool:
    """Check a detached signature with the keys of ``gnupg_home``."""
    with signature.open("rb") as f:
        result = _gpg(gnupg_home).verify_file(f, str(path))
    return bool(result.valid)


def stop_agent(gnupg_home: Path) -> None:
    """Stop the gpg-agent serving ``gnupg_home`` (tests and one-shot commands)."""
    subprocess.run(
        ["gpgconf", "--homedir", str(short_home(gnupg_home)), "--kill", "gpg-agent"],
        check=False, capture_output=True,
    )
