"""Wiring: from a configuration to the long-lived objects every command and service needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit.journal import Journal
from audit.keys import load_journal_key, load_retired_keys
from caducee.config import Config
from mailstore.crypto import MasterKeyring
from mailstore.db import Database
from mailstore.keystore import KeyStore


@dataclass
class Context:
    config: Config
    db: Database
    ring: MasterKeyring
    keystore: KeyStore
    journal: Journal

    def close(self) -> None:
        self.db.close()


def open_journal(config: Config) -> Journal:
    section = config.audit
    key = load_journal_key(section.journal_key_file) if section.journal_key_file.exists() else None
    return Journal(
        key,
        enabled=section.enabled,
        checkpoint_every=section.checkpoint_every,
        checkpoint_file=section.checkpoint_file,
        extra_verify_keys=load_retired_keys(section.retired_keys_dir),
    )


def open_context(config: Config, *, readers: int = 4) -> Context:
    """Open the database and the keys named by ``config`` (the schema must exist)."""
    ring = MasterKeyring.load(config.keys.master_key_file)
    db = Database.open(config.database_url, readers=readers)
    return Context(config, db, ring, KeyStore(ring), open_journal(config))


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path
