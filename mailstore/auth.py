"""Login checks shared by SMTP, IMAP and the web: passwords, client certificates, rate limits.

ARCHITECTURE.md §5 and §10:

* argon2id verification runs off the event loop on a small thread pool (argon2 releases the
  GIL), with a bound on how many run at once;
* successful verifications are cached for a short time, keyed by account, credentials
  version and a keyed hash of the password — a password change or a disable bumps the
  version, so the cache entry is dead at once; failures are never cached;
* failed logins are rate-limited per client address and per account, across protocols
  (one :class:`RateLimiter` per process);
* every login attempt is journaled the same way at every edge (:func:`login_entry`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection

from audit.events import AuditEvent, Outcome, login_event
from mailstore import accounts
from mailstore.accounts import Account
from mailstore.db import Database
from policy.decision import Reason

_hasher = PasswordHasher()
#: Verified against when the account does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AuthStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"  # unknown account or wrong credentials (never say which)
    DISABLED = "disabled"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    status: AuthStatus
    account: Account | None = None

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


def login_entry(
    outcome: AuthOutcome, name: str, *, client_ip: str | None, protocol: str,
    refused_kinds: Mapping[str, str] | None = None,
) -> AuditEvent:
    """The journal entry of one login attempt, the same rules at every edge.

    The actor is the account's address once credentials matched one, else the ``name`` the
    client gave. A rate-limited attempt is refused, wrong credentials failed, a disabled
    account refused, an account of a kind the edge does not serve refused with the reason
    code ``refused_kinds`` gives for it (a patient at SMTP, IMAP or the API), the rest ok.
    """
    account = outcome.account
    if outcome.status is AuthStatus.RATE_LIMITED:
        actor, result, reason = name, Outcome.REFUSED, Reason.RATE_LIMITED.value
    elif outcome.status is AuthStatus.FAILED or account is None:
        actor, result, reason = name, Outcome.FAILED, Reason.AUTH_FAILED.value
    elif outcome.status is AuthStatus.DISABLED:
        actor, result, reason = account.address, Outcome.REFUSED, "account_disabled"
    elif refused_kinds and account.kind in refused_kinds:
        actor, result, reason = account.address, Outcome.REFUSED, refused_kinds[account.kind]
    else:
        actor, result, reason = account.address, Outcome.OK, None
    return login_event(actor, result, reason, client_ip=client_ip, protocol=protocol)


@dataclass
class RateLimiter:
    """Counts failures per key in a sliding window; a key over the limit is locked out."""

    max_failures: int = 10
    window: float = 60.0
    lockout: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def blocked(self, *keys: str | None) -> bool:
        now = self.clock()
        for key in keys:
            if key is None:
                continue
            until = self._locked_until.get(key)
            if until is not None:
                if until > now:
                    return True
                del self._locked_until[key]
        return False

    def record_failure(self, *keys: str | None) -> None:
        now = self.clock()
        for key in keys:
            if key is None:
                continue
            q = self._failures.setdefault(key, deque())
            q.append(now)
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.max_failures:
                self._locked_until[key] = now + self.lockout
                q.clear()
        if len(self._failures) > 100_000:  # bound memory under a distributed attack
            self._prune(now)

    def record_success(self, key: str | None) -> None:
        if key is not None:
            self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or q[-1] <= now - self.window]:
            del self._failures[key]


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    digest: bytes
    expires: float


class Authenticator:
    """Verifies passwords and certificate identities for every protocol edge."""

    def __init__(
        self,
        db: Database,
        *,
        limiter: RateLimiter | None = None,
        cache_seconds: float = 300.0,
        max_concurrent_hashes: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.limiter = limiter or RateLimiter(clock=clock)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[int, int], _CacheEntry] = {}
        self._cache_key = secrets.token_bytes(32)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_hashes, thread_name_prefix="argon2"
        )
        self._slots = asyncio.Semaphore(max_concurrent_hashes)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _account_key(address: str) -> str:
        return "acct:" + address.strip().lower()

    async def verify_password(
        self, address: str, password: str, client_ip: str | None
    ) -> AuthOutcome:
        ip_key = f"ip:{client_ip}" if client_ip else None
        acct_key = self._account_key(address)
        if self.limiter.blocked(ip_key, acct_key):
            return AuthOutcome(AuthStatus.RATE_LIMITED)

        def _load(conn: Connection) -> tuple[Account | None, str | None]:
            acc = accounts.get_by_address(conn, address)
            return acc, (accounts.password_hash_of(conn, acc.id) if acc else None)

        acc, stored = await self.db.read(_load)
        digest = hmac.new(self._cache_key, password.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).digest()
        if acc is not None and stored is not None:
            entry = self._cache.get((acc.id, acc.credentials_version))
            if entry and entry.expires > self.clock() and hmac.compare_digest(entry.digest, digest):
                return self._after_success(acc, ip_key)
        ok = await self._argon2_verify(stored or _DUMMY_HASH, password)
        if not ok or acc is None or stored is None:
            self.limiter.record_failure(ip_key, acct_key)
            return AuthOutcome(AuthStatus.FAILED)
        if self.cache_seconds > 0:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[(acc.id, acc.credentials_version)] = _CacheEntry(
                digest, self.clock() + self.cache_seconds
            )
        return self._after_success(acc, ip_key)

    async def verify_certificate(self, subject_id: str, client_ip: str | None) -> AuthOutcome:
        """SASL EXTERNAL: the certificate (already chain-verified by TLS) maps to one account."""
        ip_key = f"ip:{client_ip}" if client_ip else None
        if self.limiter.blocked(ip_key):
            return AuthOutcome(AuthStatus.RATE_LIMITED)
        acc = await self.db.read(lambda conn: accounts.get_by_cert_subject(conn, subject_id))
        if acc is None:
            self.limiter.record_failure(ip_key)
            return AuthOutcome(AuthStatus.FAILED)
        return self._after_success(acc, ip_key)

    def _after_success(self, acc: Account, ip_key: str | None) -> AuthOutcome:
        if not acc.active:
            return AuthOutcome(AuthStatus.DISABLED, acc)
        self.limiter.record_success(self._account_key(acc.address))
        return AuthOutcome(AuthStatus.OK, acc)

    async def _argon2_verify(self, stored: str, password: str) -> bool:
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, _verify, stored, password)


def certificate_identity(cert: dict[str, Any] | None) -> str | None:
    """The account identifier of a verified client certificate (SASL EXTERNAL).

    CPS-style certificates carry the practitioner's national identifier in the subject's
    serialNumber attribute; otherwise the common name is used. The chain was verified by
    TLS against the configured trust anchors before this is called.
    """
    if not cert:
        return None
    serial = common = None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "serialNumber":
                serial = value
            elif key == "commonName":
                common = value
    return serial or common


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
