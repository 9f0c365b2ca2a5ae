"""LOGIN and AUTHENTICATE (RFC 3501 §6.2.2-3, SASL PLAIN RFC 4616, EXTERNAL RFC 4422
Appendix A, SASL-IR RFC 4959). No credentials before TLS (ARCHITECTURE.md §5); patients
are refused (they read their mail in the webmail, DOMAIN.md §5); every outcome is
journaled, never the password."""

from __future__ import annotations

import base64
import binascii
import logging

from mailstore.accounts import Account
from mailstore.auth import AuthOutcome, AuthStatus, certificate_identity, login_entry
from mailstore.imap import formatter
from mailstore.imap.commands import Authenticate, Login
from mailstore.imap.errors import CommandBad, CommandNo
from mailstore.imap.replies import ACCOUNT_DISABLED, PATIENT_LOGIN_REFUSED, refusal
from mailstore.imap.session import Result, Session
from mailstore.imap.state import State
from mailstore.tables import PATIENT
from policy.decision import Reason

log = logging.getLogger("mailstore.imap")

#: SASL exchanges end after this many bytes of client response.
MAX_SASL = 8192


def _require_tls(s: Session) -> None:
    if not s.io.tls_active and not s.ctx.settings.allow_plaintext_auth:
        raise refusal(Reason.TLS_REQUIRED)


#: Accounts that may not read mail over IMAP: patients use the web.
_REFUSED_KINDS = {PATIENT: "patient_imap_refused"}


async def _finish(s: Session, who: str, outcome: AuthOutcome) -> Result:
    """Journal the attempt (:func:`mailstore.auth.login_entry`), then turn the authenticator
    outcome into the session state and reply."""
    journal = s.ctx.journal
    if journal is not None:
        event = login_entry(outcome, who, client_ip=s.io.peer_ip, protocol="imap",
                            refused_kinds=_REFUSED_KINDS)
        await s.write(lambda tx: journal.append(tx.conn, [event]))
    if outcome.status is AuthStatus.RATE_LIMITED:
        raise refusal(Reason.RATE_LIMITED)
    if outcome.status is AuthStatus.FAILED or outcome.account is None:
        raise refusal(Reason.AUTH_FAILED)
    account: Account = outcome.account
    if outcome.status is AuthStatus.DISABLED:
        raise CommandNo(ACCOUNT_DISABLED.text, ACCOUNT_DISABLED.code)
    if account.kind in _REFUSED_KINDS:
        raise CommandNo(PATIENT_LOGIN_REFUSED.text, PATIENT_LOGIN_REFUSED.code)
    s.account = account
    s.state = State.AUTHENTICATED
    log.info("IMAP login %s from %s", account.address, s.io.peer_ip)
    return "Logged in", s.capability_code()


async def login(s: Session, cmd: Login) -> Result:
    """RFC 3501 §6.2.3 (refused before TLS: LOGINDISABLED is advertised)."""
    _require_tls(s)
    try:
        user = cmd.user.decode("utf-8")
        password = cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        raise refusal(Reason.AUTH_FAILED) from None
    outcome = await s.ctx.authenticator.verify_password(user, password, s.io.peer_ip)
    return await _finish(s, user, outcome)


async def _response(s: Session, initial: bytes | None) -> bytes:
    """The client's (first) SASL response, decoded from base64 (RFC 4959 ``=`` is empty)."""
    if initial is None:
        s.io.write(formatter.continuation())
        await s.io.drain()
        line = await s.io.read_line()
        if line.strip() == b"*":
            raise CommandBad("authentication cancelled")
        initial = line.strip()
    if initial == b"=":
        return b""
    if len(initial) > MAX_SASL:
        raise CommandBad("SASL response too long")
    try:
        return base64.b64decode(initial, validate=True)
    except (binascii.Error, ValueError):
        raise CommandBad("SASL response is not valid base64") from None


async def authenticate(s: Session, cmd: Authenticate) -> Result:
    """RFC 3501 §6.2.2 with PLAIN (RFC 4616) and EXTERNAL (RFC 4422 Appendix A)."""
    if cmd.mechanism == "PLAIN":
        _require_tls(s)
        data = await _response(s, cmd.initial)
        parts = data.split(b"\x00")
        if len(parts) != 3:
            raise CommandBad("malformed PLAIN response")
        authz, user_b, password_b = parts
        try:
            user = user_b.decode("utf-8")
            password = password_b.decode("utf-8")
            authz_s = authz.decode("utf-8")
        except UnicodeDecodeError:
            raise refusal(Reason.AUTH_FAILED) from None
        outcome = await s.ctx.authenticator.verify_password(user, password, s.io.peer_ip)
        if outcome.ok and authz_s and outcome.account and authz_s.lower() != (
            outcome.account.address
        ):
            raise CommandNo("Acting as another user is not allowed", b"AUTHORIZATIONFAILED")
        return await _finish(s, user, outcome)
    if cmd.mechanism == "EXTERNAL":
        identity = certificate_identity(s.io.peer_certificate()) if s.io.tls_active else None
        if identity is None:
            raise CommandNo("No verified client certificate", b"AUTHENTICATIONFAILED")
        wanted = (await _response(s, cmd.initial)).decode("utf-8", "replace")
        outcome = await s.ctx.authenticator.verify_certificate(identity, s.io.peer_ip)
        if outcome.ok and wanted and outcome.account and (
            wanted.lower() != outcome.account.address
        ):
            raise CommandNo("Acting as another user is not allowed", b"AUTHORIZATIONFAILED")
        return await _finish(s, f"cert:{identity}", outcome)
    raise CommandNo(f"Unsupported authentication mechanism {cmd.mechanism}", b"CANNOT")
