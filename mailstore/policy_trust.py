"""Storage of the trusted-domain list (DOMAIN.md §1): one row per (domain, source).

A source is where a domain came from: ``manual`` (``caducee trust add``), or the file path
or URL of a liste blanche that :mod:`mailstore.trust_refresh` reloads. A domain is trusted
while at least one source lists it, so a refresh of one list never removes a domain added
by hand. Names are stored in normalised A-label form (:func:`policy.domains.normalise_domain`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from mailstore.policy_tables import to_db, trusted_domain, utc
from policy.domains import DomainError, normalise_domain

MANUAL_SOURCE = "manual"


class TrustStoreError(ValueError):
    """A name that is not a domain, or an unusable source."""


@dataclass(frozen=True, slots=True)
class TrustedDomainEntry:
    domain: str
    source: str
    added_by: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    added: int
    removed: int
    kept: int


def _domain(name: str) -> str:
    try:
        return normalise_domain(name)
    except DomainError as exc:
        raise TrustStoreError(str(exc)) from None


def trusted_domains(conn: Connection) -> frozenset[str]:
    """Every trusted domain, whatever its source (our own domains are added by the caller)."""
    return frozenset(conn.execute(select(trusted_domain.c.domain).distinct()).scalars())


def list_trusted(conn: Connection, *, source: str | None = None) -> list[TrustedDomainEntry]:
    q = select(trusted_domain).order_by(trusted_domain.c.domain, trusted_domain.c.source)
    if source is not None:
        q = q.where(trusted_domain.c.source == source)
    return [
        TrustedDomainEntry(r.domain, r.source, r.added_by, utc(r.added_at))
        for r in conn.execute(q)
    ]


def source_counts(conn: Connection) -> dict[str, int]:
    """How many domains each source lists."""
    rows = conn.execute(
        select(trusted_domain.c.source, func.count()).group_by(trusted_domain.c.source)
    ).all()
    return {source: int(count) for source, count in rows}


def add_trusted(
    conn: Connection,
    domain: str,
    *,
    source: str = MANUAL_SOURCE,
    added_by: str = "",
    at: datetime,
) -> bool:
    """Add a domain for ``source``; False if that source already listed it."""
    name = _domain(domain)
    exists = conn.execute(
        select(trusted_domain.c.domain).where(
            trusted_domain.c.domain == name, trusted_domain.c.source == source
        )
    ).first()
    if exists:
        return False
    conn.execute(
        insert(trusted_domain).values(
            domain=name, source=source, added_by=added_by, added_at=to_db(at)
        )
    )
    return True


def remove_trusted(conn: Connection, domain: str, *, source: str | None = MANUAL_SOURCE) -> int:
    """Remove a domain from ``source`` (every source if ``None``); how many rows went."""
    q = delete(trusted_domain).where(trusted_domain.c.domain == _domain(domain))
    if source is not None:
        q = q.where(trusted_domain.c.source == source)
    return int(conn.execute(q).rowcount)


def replace_from_source(
    conn: Connection,
    source: str,
    domains: Iterable[str],
    *,
    added_by: str = "",
    at: datetime,
) -> ReplaceResult:
    """Make ``source`` list exactly ``domains``: add the new ones, remove the missing ones."""
    if not source:
        raise TrustStoreError("a source name is required")
    wanted = {_domain(d) for d in domains}
    current = set(
        conn.execute(
            select(trusted_domain.c.domain).where(trusted_domain.c.source == source)
        ).scalars()
    )
    to_add = sorted(wanted - current)
    to_remove = sorted(current - wanted)
    if to_add:
        stamp = to_db(at)
        conn.execute(
            insert(trusted_domain),
            [{"domain": d, "source": source, "added_by": added_by, "added_at": stamp}
             for d in to_add],
        )
    for chunk_start in range(0, len(to_remove), 500):
        chunk = to_remove[chunk_start : chunk_start + 500]
        conn.execute(
            delete(trusted_domain).where(
                trusted_domain.c.source == source, trusted_domain.c.domain.in_(chunk)
            )
        )
    return ReplaceResult(len(to_add), len(to_remove), len(current & wanted))
