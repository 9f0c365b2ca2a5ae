"""Property: a patient's message reaches a professional only if that professional's latest
message to that patient precedes it and did not close the conversation (and has not
expired), or a pharmacy grant holds — over random sequences of events, against a simple
reference model that keeps the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.patients import (
    ContactPermission,
    PharmacyGrant,
    may_patient_write,
    on_professional_message,
)
from tests.policy.corpus import INS_A

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROS = ["a@chu.mssante.fr", "b@chu.mssante.fr", "officine@pharma.mssante.fr"]


@dataclass(frozen=True)
class ProWrites:
    pro: int
    closes: bool


@dataclass(frozen=True)
class PatientWrites:
    pro: int


@dataclass(frozen=True)
class Grant:
    pro: int
    days: int  # 0: no end


@dataclass(frozen=True)
class Revoke:
    pro: int


Event = ProWrites | PatientWrites | Grant | Revoke

events = st.one_of(
    st.builds(ProWrites, st.integers(0, 2), st.booleans()),
    st.builds(PatientWrites, st.integers(0, 2)),
    st.builds(Grant, st.integers(0, 2), st.sampled_from([0, 1, 10])),
    st.builds(Revoke, st.integers(0, 2)),
)
# Each event happens after a random pause (zero included: same instant, sequence order).
steps = st.lists(st.tuples(events, st.sampled_from([0, 60, 3600, 86400, 5 * 86400])),
                 max_size=40)


class Reference:
    """Keeps every event; answers from the whole history."""

    def __init__(self, expiry: timedelta | None) -> None:
        self.expiry = expiry
        self.pro_messages: dict[int, list[tuple[datetime, bool]]] = {}
        self.grant_events: dict[int, list[tuple[datetime, str, int]]] = {}

    def apply(self, event: Event, at: datetime) -> None:
        if isinstance(event, ProWrites):
            self.pro_messages.setdefault(event.pro, []).append((at, event.closes))
        elif isinstance(event, Grant):
            self.grant_events.setdefault(event.pro, []).append((at, "grant", event.days))
        elif isinstance(event, Revoke):
            self.grant_events.setdefault(event.pro, []).append((at, "revoke", 0))

    def allowed(self, pro: int, at: datetime) -> bool:
        grants = self.grant_events.get(pro, [])
        if grants:
            when, kind, days = grants[-1]
            if kind == "grant" and (days == 0 or at < when + timedelta(days=days)):
                return True
        messages = self.pro_messages.get(pro, [])
        if not messages:
            return False
        latest_at, closed = messages[-1]
        if closed:
            return False
        return not (self.expiry and at - latest_at > self.expiry)


class Implementation:
    """The stored state only, moved by the pure transitions."""

    def __init__(self, expiry: timedelta | None) -> None:
        self.expiry = expiry
        self.permissions: dict[int, ContactPermission] = {}
        self.grants: dict[int, PharmacyGrant] = {}
        self.n = 0

    def apply(self, event: Event, at: datetime) -> None:
        self.n += 1
        if isinstance(event, ProWrites):
            self.permissions[event.pro] = on_professional_message(
                self.permissions.get(event.pro), patient_ins=INS_A, professional=PROS[event.pro],
                message_id=f"<{self.n}@test>", at=at, closes=event.closes,
            )
        elif isinstance(event, Grant):
            expires = at + timedelta(days=event.days) if event.days else None
            self.grants[event.pro] = PharmacyGrant(INS_A, PROS[event.pro], at, "op",
                                                   expires_at=expires)
        elif isinstance(event, Revoke) and event.pro in self.grants:
            g = self.grants[event.pro]
            if g.revoked_at is None:
                self.grants[event.pro] = replace(g, revoked_at=at)

    def allowed(self, pro: int, at: datetime) -> bool:
        return may_patient_write(
            professional=PROS[pro], permission=self.permissions.get(pro),
            pharmacy=self.grants.get(pro), now=at, expiry=self.expiry,
        ).allowed


@settings(max_examples=400, deadline=None)
@given(steps=steps, expiry_days=st.sampled_from([0, 1, 7]))
def test_patient_reaches_a_professional_only_as_the_reference_says(
    steps: list[tuple[Event, int]], expiry_days: int
) -> None:
    expiry = timedelta(days=expiry_days) if expiry_days else None
    ref, impl = Reference(expiry), Implementation(expiry)
    at = T0
    for event, pause in steps:
        at += timedelta(seconds=pause)
        if isinstance(event, PatientWrites):
            assert impl.allowed(event.pro, at) == ref.allowed(event.pro, at), (event, at)
        # after any event, every professional's answer agrees
        ref.apply(event, at)
        impl.apply(event, at)
        for pro in range(len(PROS)):
            assert impl.allowed(pro, at) == ref.allowed(pro, at), (pro, at)
