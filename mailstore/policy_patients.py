"""Patient accounts: creation at ``<INS>@<patient domain>`` and one-time activation.

A patient account is created *pending* (it already receives mail: professionals may write
before the patient first logs in) with a profile holding the personal e-mail address for
notifications (DOMAIN.md §5) and the argon2id hash of a one-time activation code. The code
is shown once to the operator, who hands it to the patient; the webmail (or
``caducee patient activate``) checks it, activates the account and forgets the code.
Wrong codes are counted: after :data:`MAX_ACTIVATION_FAILURES` the code is void and a new
one must be issued.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Row, insert, select, update

from mailstore.accounts import (
    ACTIVE,
    PENDING,
    Account,
    create_account,
    get_by_address,
    set_password,
    set_state,
)
from mailstore.keystore import KeyStore
from mailstore.policy_tables import patient_profile, to_db, utc, utc_or_none
from mailstore.tables import PATIENT
from policy.addresses import AddressError, normalise_address, patient_address
from policy.identifiers import check_ins

#: Crockford's base 32 without the ambiguous I, L, O, U: 12 symbols carry 60 bits.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
MAX_ACTIVATION_FAILURES = 5
DEFAULT_CODE_VALIDITY = timedelta(days=30)

#: argon2id at OWASP's minimum (19 MiB, t=2, p=1): a 60-bit single-use code that locks after
#: five wrong tries needs no more, and the check stays cheap for the web.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class PatientError(ValueError):
    """A patient operation refused (bad INS, duplicate, unknown patient)."""


class ActivationResult(StrEnum):
    ACTIVATED = "activated"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    LOCKED = "locked"  # too many wrong codes
    NO_PENDING_CODE = "no_pending_code"  # already activated, or never issued
    UNKNOWN_PATIENT = "unknown_patient"


@dataclass(frozen=True, slots=True)
class PatientProfile:
    ins: str
    address: str
    notification_email: str
    created_at: datetime
    activated_at: datetime | None
    activation_expires_at: datetime | None
    activation_failures: int
    has_pending_code: bool


def _profile(row: Row[tuple[object, ...]]) -> PatientProfile:
    m = row._mapping
    return PatientProfile(
        ins=m["ins"],
        address=m["address"],
        notification_email=m["notification_email"],
        created_at=utc(m["created_at"]),
        activated_at=utc_or_none(m["activated_at"]),
        activation_expires_at=utc_or_none(m["activation_expires_at"]),
        activation_failures=m["activation_failures"],
        has_pending_code=m["activation_code_hash"] is not None,
    )


def generate_activation_code() -> str:
    """A fresh code, grouped for reading aloud: ``XXXX-XXXX-XXXX``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalise_code(code: str) -> str:
    """Forgive case, spaces, dashes and the usual look-alikes (O→0, I/L→1)."""
    cleaned = "".join(c for c in code.upper() if c.isalnum())
    return cleaned.translate(str.maketrans("OIL", "011"))


def _check_ins(ins: str) -> str:
    value = ins.strip().upper()
    problem = check_ins(value)
    if problem:
        raise PatientError(f"{problem}: {ins!r}")
    return value


def add_patient(
    conn: Connection,
    keystore: KeyStore,
    *,
    ins: str,
    patient_domain: str,
    display_name: str,
    notification_email: str,
    now: datetime,
    code_valid_for: timedelta = DEFAULT_CODE_VALIDITY,
) -> tuple[Account, str]:
    """Create a pending patient account and its profile; return it and the activation code.

    The INS key is checked (DOMAIN.md §3, Corsica included).
    """
    value = _check_ins(ins)
    try:
        address = patient_address(value, patient_domain)
        email = normalise_address(notification_email)
    except AddressError as exc:
        raise PatientError(str(exc)) from None
    account = create_account(
        conn, keystore, address=address, kind=PATIENT, display_name=display_name, ins=value,
        state=PENDING,
    )
    code = generate_activation_code()
    conn.execute(
        insert(patient_profile).values(
            ins=value,
            address=account.address,
            notification_email=email,
            activation_code_hash=_hasher.hash(normalise_code(code)),
            activation_expires_at=to_db(now + code_valid_for),
            activation_failures=0,
            created_at=to_db(now),
        )
    )
    return account, code


def get_profile(conn: Connection, ins: str) -> PatientProfile | None:
    row = conn.execute(
        select(patient_profile).where(patient_profile.c.ins == ins.strip().upper())
    ).first()
    return _profile(row) if row else None


def reissue_activation_code(
    conn: Connection, ins: str, *, now: datetime, code_valid_for: timedelta = DEFAULT_CODE_VALIDITY
) -> str:
    """A new code for a patient not yet activated (the old one is void)."""
    profile = get_profile(conn, ins)
    if profile is None:
        raise PatientError(f"no patient with INS {ins}")
    if profile.activated_at is not None:
        raise PatientError(f"patient {ins} is already activated")
    code = generate_activation_code()
    conn.execute(
        update(patient_profile)
        .where(patient_profile.c.ins == profile.ins)
        .values(
            activation_code_hash=_hasher.hash(normalise_code(code)),
            activation_expires_at=to_db(now + code_valid_for),
            activation_failures=0,
        )
    )
    return code


def activate_patient(
    conn: Connection, *, ins: str, code: str, now: datetime, password: str | None = None
) -> ActivationResult:
    """Check the one-time code; on success activate the account (and set its password).

    Returns a result rather than raising, so that the caller commits the failure count.
    """
    row = conn.execute(
        select(patient_profile)
        .where(patient_profile.c.ins == ins.strip().upper())
        .with_for_update()
    ).first()
    if row is None:
        return ActivationResult.UNKNOWN_PATIENT
    m = row._mapping
    code_hash: str | None = m["activation_code_hash"]
    if code_hash is None:
        return ActivationResult.NO_PENDING_CODE
    if m["activation_failures"] >= MAX_ACTIVATION_FAILURES:
        return ActivationResult.LOCKED
    expires = utc_or_none(m["activation_expires_at"])
    if expires is not None and to_db(now) >= expires:
        return ActivationResult.EXPIRED
    try:
        _hasher.verify(code_hash, normalise_code(code))
    except (VerificationError, InvalidHashError):
        conn.execute(
            update(patient_profile)
            .where(patient_profile.c.ins == m["ins"])
            .values(activation_failures=patient_profile.c.activation_failures + 1)
        )
        return ActivationResult.WRONG_CODE
    account = get_by_address(conn, m["address"])
    if account is None:
        return ActivationResult.UNKNOWN_PATIENT
    if password is not None:
        set_password(conn, account.address, password)
    if account.state != ACTIVE:
        set_state(conn, account.address, ACTIVE)
    conn.execute(
        update(patient_profile)
        .where(patient_profile.c.ins == m["ins"])
        .values(activation_code_hash=None, activation_expires_at=None, activated_at=to_db(now))
    )
    return ActivationResult.ACTIVATED
