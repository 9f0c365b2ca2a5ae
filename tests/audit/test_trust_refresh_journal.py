"""The automatic trust-list refresher journals each reload that changes the trust space, in
the transaction that changes it, and nothing when the list is unchanged or unreadable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from audit.journal import Journal
from audit.tables import audit_entry
from mailstore import policy_trust
from mailstore.db import Database
from mailstore.trust_refresh import ACTOR, TrustListRefresher, source_label
from tests.audit.conftest import check

T0 = datetime(2026, 3, 1, tzinfo=UTC)



async def _trust_entries(db: Database) -> list[tuple[str, str, str, dict[str, str]]]:
    e = audit_entry.c
    rows = await db.read(lambda c: c.execute(
        select(e.action, e.actor, e.outcome, e.object_ids).order_by(e.seq)).all())
    return [(r[0], r[1], r[2], dict(json.loads(r[3]))) for r in rows]


async def test_refresher_journals_changes_only(
    db: Database, journal: Journal, tmp_path: Path
) -> None:
    source = tmp_path / "lb.txt"
    source.write_text("one.mssante.fr\ntwo.mssante.fr\n", encoding="utf-8")
    refresher = TrustListRefresher(db, [str(source)], period=0, clock=lambda: T0,
                                   journal=journal)
    await refresher.refresh_once()
    await refresher.refresh_once()  # unchanged: nothing to journal
    source.write_text("two.mssante.fr\nthree.mssante.fr\nfour.mssante.fr\n", encoding="utf-8")
    await refresher.refresh_once()
    source.write_text("<ListeBlanche>", encoding="utf-8")  # unreadable: previous list kept
    outcomes = await refresher.refresh_once()
    assert not outcomes[0].ok

    label = str(source)
    assert await _trust_entries(db) == [
        ("trust.changed", ACTOR, "ok",
         {"change": "refresh", "source": label, "added": "2", "removed": "0"}),
        ("trust.changed", ACTOR, "ok",
         {"change": "refresh", "source": label, "added": "2", "removed": "1"}),
    ]
    assert await db.read(policy_trust.trusted_domains) == {
        "two.mssante.fr", "three.mssante.fr", "four.mssante.fr"}
    report = check(db.engine, journal)
    assert report.ok, report.problems


def test_source_label_keeps_no_secret() -> None:
    assert source_label("https://user:pw@lists.example:8443/lb.xml?token=s3cret#x") == (
        "https://lists.example:8443/lb.xml")
    assert source_label("/etc/caducee/lb.txt") == "/etc/caducee/lb.txt"
