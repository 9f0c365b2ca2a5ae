"""The patient's access history with names, professions and titles (issue 4, DOMAIN.md §8).

The journal holds identifiers only (:mod:`audit.access_log`). This module supplies the
resolver that turns them, *at read time*, into what the patient reads:

* **who**: the actor's display name and profession label from the directory (the
  practitioner's profession when the mailbox names one, else the mailbox's own profession
  code), falling back to the account's display name, then to the address;
* **what**: a message's subject, decrypted now from the mail store — first the copy the
  event points at (``mailbox_uid``), checked against the event's Message-ID, then the
  patient's own copy with that Message-ID. Document titles will come from the dossier
  once it exists (issue "attachments bridge"); until then a document has no title here.

Nothing resolved here is ever written back to the journal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from audit.access_log import DEFAULT_ACTIONS, AccessRecord, Resolution, Resolve, access_log
from audit.events import AuditEvent
from directory import lookup
from directory.professions import profession_label
from mailstore import accounts
from mailstore.crypto import DecryptionError
from mailstore.keystore import KeyStore
from mailstore.messages import read_meta
from mailstore.tables import account, mailbox, message

#: How many of the patient's own messages are searched for a Message-ID (newest first).
MAX_OWN_MESSAGES = 2000

_SPACE = re.compile(r"\s+")


def _norm_mid(value: str | None) -> str:
    return _SPACE.sub("", value or "")


def _subject(meta: dict[str, Any]) -> str | None:
    for name, value in meta.get("fields", ()):
        if name == "subject":
            return str(value).strip()
    return None


def _meta_mid(meta: dict[str, Any]) -> str:
    return _norm_mid(meta.get("headers", {}).get("message-id"))


class _Resolver:
    """One patient's view: caches directory lookups and decrypted titles for one listing."""

    def __init__(self, conn: Connection, keystore: KeyStore, patient_ins: str) -> None:
        self.conn = conn
        self.keystore = keystore
        self.patient_ins = patient_ins
        self._who: dict[str, tuple[str, str | None]] = {}
        self._own_titles: dict[str, str] | None = None

    def __call__(self, event: AuditEvent) -> Resolution:
        name, profession = self.who(event.actor)
        return Resolution(name, profession, self.title(event))

    # -- who ---------------------------------------------------------------------------------

    def who(self, address: str) -> tuple[str, str | None]:
        known = self._who.get(address)
        if known is None:
            known = self._who[address] = self._lookup_who(address)
        return known

    def _lookup_who(self, address: str) -> tuple[str, str | None]:
        entry = lookup.mailbox(self.conn, address) if "@" in address else None
        if entry is not None:
            label = ""
            if entry.national_id:
                person = lookup.practitioner(self.conn, entry.national_id)
                if person is not None:
                    label = person.profession
            if not label and entry.profession_code:
                label = profession_label(entry.profession_code)
            return entry.display_name or address, label or None
        acc = accounts.get_by_address(self.conn, address) if "@" in address else None
        if acc is not None and acc.display_name:
            return acc.display_name, None
        return address, None

    # -- what --------------------------------------------------------------------------------

    def title(self, event: AuditEvent) -> str | None:
        if event.message_id is None:
            return None  # documents: titled by the dossier (not built yet)
        mid = _norm_mid(event.message_id)
        for kind, value in event.object_ids:
            if kind == "mailbox_uid":
                found = self._title_at(value, mid)
                if found is not None:
                    return found
        return self._own_title(mid)

    def _title_at(self, mailbox_uid: str, mid: str) -> str | None:
        mb, _, uid = mailbox_uid.partition("/")
        if not (mb.isdigit() and uid.isdigit()):
            return None
        row = self.conn.execute(
            select(mailbox.c.account_id, message.c.blob_id)
            .select_from(message.join(mailbox))
            .where(message.c.mailbox_id == int(mb), message.c.uid == int(uid))
        ).first()
        if row is None:
            return None  # expunged since: fall back to the patient's copy
        meta = self._meta(int(row[0]), str(row[1]))
        if meta is None or _meta_mid(meta) != mid:
            return None
        return _subject(meta)

    def _own_title(self, mid: str) -> str | None:
        if self._own_titles is None:
            self._own_titles = {}
            rows = self.conn.execute(
                select(account.c.id, message.c.blob_id)
                .select_from(message.join(mailbox).join(account))
                .where(account.c.ins == self.patient_ins)
                .order_by(message.c.id.desc())
                .limit(MAX_OWN_MESSAGES)
            ).all()
            for account_id, blob_id in rows:
                meta = self._meta(int(account_id), str(blob_id))
                if meta is None:
                    continue
                subject = _subject(meta)
                if subject is not None:
                    self._own_titles.setdefault(_meta_mid(meta), subject)
        return self._own_titles.get(mid)

    def _meta(self, account_id: int, blob_id: str) -> dict[str, Any] | None:
        try:
            return read_meta(self.conn, self.keystore, account_id, blob_id)
        except DecryptionError:
            return None  # a tampered row shows no title; verify/IMAP report it elsewhere


def resolver(conn: Connection, keystore: KeyStore, patient_ins: str) -> Resolve:
    """The :data:`audit.access_log.Resolve` for one patient's listing on ``conn``."""
    return _Resolver(conn, keystore, patient_ins)


def patient_access_log(
    conn: Connection,
    keystore: KeyStore,
    patient_ins: str,
    *,
    actions: Sequence[str] = DEFAULT_ACTIONS,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AccessRecord]:
    """Who accessed the patient's messages and documents, and when, newest first, with
    names, professions and titles resolved now (run it in ``db.read``)."""
    return access_log(
        conn, patient_ins, resolver(conn, keystore, patient_ins), actions=actions,
        since=since, limit=limit,
    )
