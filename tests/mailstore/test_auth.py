"""Login checks: rate limiting, the verification cache and its invalidation."""

from __future__ import annotations

import pytest

from mailstore import accounts
from mailstore.auth import Authenticator, AuthOutcome, AuthStatus, RateLimiter, login_entry
from mailstore.crypto import MasterKeyring
from mailstore.db import Database
from mailstore.keystore import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_window_and_lockout() -> None:
    clock = Clock()
    rl = RateLimiter(max_failures=3, window=60, lockout=300, clock=clock)
    for _ in range(2):
        rl.record_failure("ip:1")
        clock.now += 1
    assert not rl.blocked("ip:1")
    clock.now += 61  # the first two fell out of the window
    rl.record_failure("ip:1")
    assert not rl.blocked("ip:1")
    rl.record_failure("ip:1")
    rl.record_failure("ip:1")
    assert rl.blocked("ip:1") and rl.blocked(None, "ip:1")
    assert not rl.blocked("ip:2")
    clock.now += 301
    assert not rl.blocked("ip:1")


@pytest.fixture
def auth(sqlite_url: str):
    db = Database.open(sqlite_url)
    ks = KeyStore(MasterKeyring.generate())
    db.write_sync(lambda tx: accounts.create_account(
        tx.conn, ks, address="p@d.fr", kind="professional", password="first-password"))
    clock = Clock()
    a = Authenticator(db, clock=clock, limiter=RateLimiter(max_failures=3, clock=clock))
    yield db, a, clock
    a.close()
    db.close()


async def test_cache_hit_and_invalidation_on_password_change(auth) -> None:
    db, a, clock = auth
    assert (await a.verify_password("p@d.fr", "first-password", "1.1.1.1")).ok
    assert len(a._cache) == 1
    assert (await a.verify_password("P@D.fr", "first-password", "1.1.1.1")).ok
    bad = await a.verify_password("p@d.fr", "wrong", "1.1.1.1")
    assert bad.status is AuthStatus.FAILED
    db.write_sync(lambda tx: accounts.set_password(tx.conn, "p@d.fr", "second-password"))
    assert not (await a.verify_password("p@d.fr", "first-password", "1.1.1.2")).ok
    assert (await a.verify_password("p@d.fr", "second-password", "1.1.1.2")).ok
    clock.now += 10_000  # cache entries expire
    assert (await a.verify_password("p@d.fr", "second-password", "1.1.1.2")).ok


async def test_disabled_unknown_and_rate_limited(auth) -> None:
    db, a, _clock = auth
    assert (await a.verify_password("nobody@d.fr", "x" * 10, "2.2.2.2")).status is AuthStatus.FAILED
    db.write_sync(lambda tx: accounts.set_state(tx.conn, "p@d.fr", accounts.DISABLED))
    assert (await a.verify_password("p@d.fr", "first-password", "3.3.3.3")).status is (
        AuthStatus.DISABLED
    )
    for _ in range(3):
        await a.verify_password("p@d.fr", "nope", "4.4.4.4")
    assert (await a.verify_password("other@d.fr", "x", "4.4.4.4")).status is (
        AuthStatus.RATE_LIMITED
    )


def _account(kind: str, address: str = "dr@demo.mssante.fr") -> accounts.Account:
    return accounts.Account(id=1, address=address, kind=kind, display_name="Dr", rpps=None,
                            ins=None, state="active", cert_subject=None,
                            credentials_version=1)


@pytest.mark.parametrize(
    ("status", "kind", "want"),
    [
        (AuthStatus.OK, "professional", ("login.succeeded", "ok", None, "dr@demo.mssante.fr")),
        (AuthStatus.OK, "patient",
         ("login.failed", "refused", "patient_x_refused", "dr@demo.mssante.fr")),
        (AuthStatus.DISABLED, "professional",
         ("login.failed", "refused", "account_disabled", "dr@demo.mssante.fr")),
        (AuthStatus.FAILED, None, ("login.failed", "failed", "auth_failed", "Typed@Name")),
        (AuthStatus.RATE_LIMITED, None, ("login.failed", "refused", "rate_limited", "Typed@Name")),
    ],
)
def test_login_entry_is_the_same_rule_for_every_edge(
    status: AuthStatus, kind: str | None, want: tuple[str, str, str | None, str]
) -> None:
    """The actor is the account once one matched, else the name typed; a kind the edge
    does not serve is refused with the edge's reason code; never a password."""
    outcome = AuthOutcome(status, _account(kind) if kind else None)
    event = login_entry(outcome, "Typed@Name", client_ip="192.0.2.1", protocol="smtp",
                        refused_kinds={"patient": "patient_x_refused"})
    assert (event.action, event.outcome, event.reason, event.actor) == want
    assert (event.client_ip, event.protocol) == ("192.0.2.1", "smtp")
