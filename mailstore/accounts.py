"""Accounts and their default mailboxes.

A professional, organisation, admin or patient account owns one address, a data key (see
:mod:`mailstore.keystore`) and the default mailboxes with their special-use attributes
(RFC 6154 §2): INBOX, Sent, Drafts, Trash, Junk, Archive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from sqlalchemy import Connection, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailstore.keystore import KeyStore
from mailstore.tables import ADMIN, ORGANISATION, PATIENT, PROFESSIONAL, account, mailbox
from policy import identifiers as ids

KINDS = (PROFESSIONAL, PATIENT, ORGANISATION, ADMIN)
ACTIVE = "active"
DISABLED = "disabled"
PENDING = "pending"  # patients before activation

#: Default mailboxes and their special-use attribute (RFC 6154 §2).
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

#: argon2id with argon2-cffi's defaults (RFC 9106 "second recommended option").
_hasher = PasswordHasher()


class AccountError(Exception):
    """An account operation was refused (duplicate address, unknown account, bad value)."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    kind: str
    display_name: str
    rpps: str | None
    ins: str | None
    state: str
    cert_subject: str | None
    credentials_version: int

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def _from_row(m: RowMapping) -> Account:
    return Account(
        id=m["id"],
        address=m["address"],
        kind=m["kind"],
        display_name=m["display_name"],
        rpps=m["rpps"],
        ins=m["ins"],
        state=m["state"],
        cert_subject=m["cert_subject"],
        credentials_version=m["credentials_version"],
    )


_COLUMNS = (
    account.c.id,
    account.c.address,
    account.c.kind,
    account.c.display_name,
    account.c.rpps,
    account.c.ins,
    account.c.state,
    account.c.cert_subject,
    account.c.credentials_version,
)


def normalise_address(address: str) -> str:
    """Lower-case the domain and the local part (our local parts are case-insensitive)."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise AccountError(f"not a mail address: {address!r}")
    return f"{local.lower()}@{domain.lower()}"


def normalise_national_id(value: str) -> str:
    """A practitioner identifier in the directory's form, ``8``+RPPS or ``0``+ADELI.

    A bare RPPS (11 digits) or ADELI (9 digits) gets its prefix (DOMAIN.md §3), so that the
    sending rule's comparison with the directory entry (:mod:`policy.senders`) holds. Only
    the form is checked: whether the practitioner is referenced is the directory's call.
    """
    v = value.strip()
    if ids.check_rpps(v, lenient=True) is None:
        return "8" + v
    if ids.check_adeli(v, lenient=True) is None:
        return "0" + v
    if ids.check_national_practitioner_id(v, lenient=True) is None:
        return v
    raise AccountError(
        f"not a practitioner identifier: {value!r} (RPPS, ADELI, 8+RPPS or 0+ADELI)"
    )


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AccountError("a password must have at least 8 characters")
    return _hasher.hash(password)


def new_uidvalidity() -> int:
    """A UIDVALIDITY that grows with time (RFC 3501 §2.3.1.1): the current Unix time, which
    fits the 32-bit field until 2106. CREATE after DELETE takes the larger of this and the
    account's highest value + 1 (mailstore.folders)."""
    return int(time.time())


def create_account(
    conn: Connection,
    keystore: KeyStore,
    *,
    address: str,
    kind: str,
    display_name: str = "",
    password: str | None = None,
    rpps: str | None = None,
    ins: str | None = None,
    cert_subject: str | None = None,
    state: str = ACTIVE,
) -> Account:
    """Create an account, its data key and its default mailboxes (one transaction: the caller's).

    ``rpps`` is the practitioner identifier, stored as ``8``+RPPS / ``0``+ADELI whatever form
    it is given in (:func:`normalise_national_id`).
    """
    if kind not in KINDS:
        raise AccountError(f"unknown account kind {kind!r} (expected one of {', '.join(KINDS)})")
    address = normalise_address(address)
    rpps = normalise_national_id(rpps) if rpps else None
    now = datetime.now(UTC)
    try:
        with conn.begin_nested():
            account_id = conn.execute(
                insert(account)
                .values(
                    address=address,
                    kind=kind,
                    display_name=display_name,
                    rpps=rpps,
                    ins=ins,
                    password_hash=hash_password(password) if password else None,
                    cert_subject=cert_subject,
                    state=state,
                    created_at=now,
                    updated_at=now,
                )
                .returning(account.c.id)
            ).scalar_one()
    except IntegrityError:
        raise AccountError(
            f"an account already exists for {address} (or its INS/certificate)"
        ) from None
    keystore.create(conn, account_id)
    base = new_uidvalidity()
    conn.execute(
        insert(mailbox),
        [
            {
                "account_id": account_id,
                "name": name,
                "special_use": use,
                "uidvalidity": base + i,
                "uidnext": 1,
                "highestmodseq": 1,
                "subscribed": True,
            }
            for i, (name, use) in enumerate(DEFAULT_MAILBOXES)
        ],
    )
    found = get_by_id(conn, account_id)
    assert found is not None
    return found


def get_by_address(conn: Connection, address: str) -> Account | None:
    try:
        address = normalise_address(address)
    except AccountError:
        return None
    row = conn.execute(select(*_COLUMNS).where(account.c.address == address)).first()
    return _from_row(row._mapping) if row else None


def get_by_id(conn: Connection, account_id: int) -> Account | None:
    row = conn.execute(select(*_COLUMNS).where(account.c.id == account_id)).first()
    return _from_row(row._mapping) if row else None


def get_by_cert_subject(conn: Connection, subject: str) -> Account | None:
    row = conn.execute(select(*_COLUMNS).where(account.c.cert_subject == subject)).first()
    return _from_row(row._mapping) if row else None


def password_hash_of(conn: Connection, account_id: int) -> str | None:
    return conn.execute(
        select(account.c.password_hash).where(account.c.id == account_id)
    ).scalar_one_or_none()


def list_accounts(conn: Connection, kind: str | None = None) -> list[Account]:
    q = select(*_COLUMNS).order_by(account.c.address)
    if kind:
        q = q.where(account.c.kind == kind)
    return [_from_row(r._mapping) for r in conn.execute(q)]


def _require(conn: Connection, address: str) -> Account:
    found = get_by_address(conn, address)
    if found is None:
        raise AccountError(f"no account {address}")
    return found


def set_password(conn: Connection, address: str, password: str) -> Account:
    """Change the password; bumps ``credentials_version`` so cached logins are dropped."""
    acc = _require(conn, address)
    conn.execute(
        update(account)
        .where(account.c.id == acc.id)
        .values(
            password_hash=hash_password(password),
            credentials_version=account.c.credentials_version + 1,
            updated_at=datetime.now(UTC),
        )
    )
    return _require(conn, address)


def set_state(conn: Connection, address: str, state: str) -> Account:
    if state not in (ACTIVE, DISABLED, PENDING):
        raise AccountError(f"unknown state {state!r}")
    acc = _require(conn, address)
    conn.execute(
        update(account)
        .where(account.c.id == acc.id)
        .values(
            state=state,
            credentials_version=account.c.credentials_version + 1,
            updated_at=datetime.now(UTC),
        )
    )
    return _require(conn, address)


def set_cert_subject(conn: Connection, address: str, subject: str | None) -> Account:
    acc = _require(conn, address)
    try:
        with conn.begin_nested():
            conn.execute(
                update(account)
                .where(account.c.id == acc.id)
                .values(
                    cert_subject=subject,
                    credentials_version=account.c.credentials_version + 1,
                    updated_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        raise AccountError(
            f"certificate identifier {subject} is bound to another account"
        ) from None
    return _require(conn, address)


def mailbox_id(conn: Connection, account_id: int, name: str) -> int | None:
    """The id of one of the account's mailboxes (``INBOX`` is case-insensitive)."""
    if name.upper() == "INBOX":
        name = "INBOX"
    return conn.execute(
        select(mailbox.c.id).where(mailbox.c.account_id == account_id, mailbox.c.name == name)
    ).scalar_one_or_none()
