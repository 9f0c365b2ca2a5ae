"""Reloading the trusted-domain lists on a schedule (DOMAIN.md §1; ``[policy] trust_sources``).

Each source is a file path or an ``https://`` URL (plain ``http://`` is refused, and so is
a redirect to it), in the liste blanche XML format or the plain format
(:mod:`policy.trust_list`). A reload replaces that source's rows
(:func:`mailstore.policy_trust.replace_from_source`) in one transaction. A source that
cannot be fetched, cannot be parsed or lists no domain at all leaves its previous rows in
place: a broken download must not empty the trust space. Fetching runs in a thread, off
the event loop. A reload that adds or removes domains is journaled (``trust.changed``:
source, counts added and removed) in the transaction that changes the rows.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from audit.events import Action, AuditEvent
from audit.journal import Journal
from mailstore.db import Database, StorageUnavailable, Tx
from mailstore.policy_trust import ReplaceResult, replace_from_source, trusted_domains
from policy.trust_list import MAX_LIST_BYTES, TrustListError, parse_trust_list

log = logging.getLogger(__name__)

USER_AGENT = "Caducee-trust-refresh/1"
#: The journal's actor for automatic reloads.
ACTOR = "service:trust-refresh"


class TrustSourceError(Exception):
    """A source that cannot be read (bad scheme, network or TLS failure, too large)."""


def resolve_source(source: str, base_dir: Path | None = None) -> str:
    """An https URL unchanged, a ``file:`` URL or path made absolute (against ``base_dir``)."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme in ("https", "http"):
        return source
    if parsed.scheme == "file":
        return str(Path(urllib.request.url2pathname(parsed.path)))
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


def source_label(source: str) -> str:
    """``source`` without what could be a secret (URL user info, query, fragment)."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme not in ("https", "http"):
        return source
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Any, newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise TrustSourceError(f"redirect to a non-https URL refused: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_source(
    source: str,
    *,
    ca_file: Path | None = None,
    timeout: float = 30.0,
    max_bytes: int = MAX_LIST_BYTES,
) -> bytes:
    """Read a source (blocking); raise :class:`TrustSourceError`."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme == "http":
        raise TrustSourceError(f"plain http is refused for trust lists: {source}")
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx), _HttpsOnlyRedirects()
        )
        request = urllib.request.Request(  # noqa: S310 - the scheme is https, checked above
            source, headers={"User-Agent": USER_AGENT}
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                data: bytes = response.read(max_bytes + 1)
        except TrustSourceError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrustSourceError(f"cannot fetch {source}: {exc}") from None
    else:
        try:
            with Path(source).open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise TrustSourceError(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise TrustSourceError(f"{source} is larger than {max_bytes} bytes")
    return data


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    source: str
    ok: bool
    added: int = 0
    removed: int = 0
    kept: int = 0
    #: Names of the list that were not domains.
    rejected: int = 0
    error: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


class TrustListRefresher:
    """Reloads every configured source now and then every ``period`` seconds.

    ``on_change`` receives the whole trusted set (every source) after each round, so an
    edge can keep an in-memory :class:`policy.domains.TrustSpace` current; ``journal``
    records each reload that changed something.
    """

    def __init__(
        self,
        db: Database,
        sources: Sequence[str],
        *,
        period: float,
        base_dir: Path | None = None,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] = _now,
        on_change: Callable[[frozenset[str]], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.db = db
        self.journal = journal
        self.sources = [resolve_source(s, base_dir) for s in sources]
        self.period = period
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock
        self.on_change = on_change
        self.rounds = 0
        self.last: list[RefreshOutcome] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def refresh_source(self, source: str) -> RefreshOutcome:
        try:
            data = await asyncio.to_thread(
                fetch_source, source, ca_file=self.ca_file, timeout=self.timeout
            )
            parsed = parse_trust_list(data)
        except (TrustSourceError, TrustListError) as exc:
            log.warning("trust list %s not loaded: %s", source, exc)
            return RefreshOutcome(source, False, error=str(exc))
        if not parsed.domains:
            msg = "the list has no domain; the previous one is kept"
            log.warning("trust list %s not loaded: %s", source, msg)
            return RefreshOutcome(source, False, rejected=len(parsed.rejected), error=msg)
        at = self.clock()

        journal = self.journal

        def job(tx: Tx) -> ReplaceResult:
            result = replace_from_source(
                tx.conn, source, parsed.domains, added_by="refresh", at=at
            )
            if journal is not None and (result.added or result.removed):
                journal.append(tx.conn, [AuditEvent(
                    action=Action.TRUST_CHANGED, actor=ACTOR, protocol="refresh",
                    object_ids=(("change", "refresh"), ("source", source_label(source)),
                                ("added", str(result.added)),
                                ("removed", str(result.removed))),
                )])
            return result

        try:
            result = await self.db.write(job)
        except StorageUnavailable as exc:
            log.warning("trust list %s not stored: %s", source, exc)
            return RefreshOutcome(source, False, error=str(exc))
        for bad in parsed.rejected:
            log.warning("trust list %s: not a domain %r (%s)", source, bad.value, bad.problem)
        log.info(
            "trust list %s loaded: %d domains (+%d, -%d)",
            source, len(parsed.domains), result.added, result.removed,
        )
        return RefreshOutcome(
            source, True, result.added, result.removed, result.kept, len(parsed.rejected)
        )

    async def refresh_once(self) -> list[RefreshOutcome]:
        outcomes = [await self.refresh_source(s) for s in self.sources]
        self.last = outcomes
        self.rounds += 1
        if self.on_change is not None:
            domains = await self.db.read(trusted_domains)
            self.on_change(domains)
        return outcomes

    async def run(self) -> None:
        """Refresh now, then every ``period`` seconds until :meth:`stop` (once if period ≤ 0)."""
        while not self._stop.is_set():
            await self.refresh_once()
            if self.period <= 0:
                return
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.period)
            except TimeoutError:
                continue

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="trust-refresh")
        return self._task

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task
