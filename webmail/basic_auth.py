"""HTTP Basic authentication (RFC 7617) for API clients, over TLS only, with the same
rate-limited, cached verification as SMTP and IMAP (mailstore.auth).

HTTP Basic carries the credentials with every request (RFC 7617 §2), so every request that
presents them is a login: each outcome is journaled (``login.succeeded`` /
``login.failed``, protocol ``web``, with the client IP), never the password. A request
without credentials, or with a header that does not decode to ``user:password``, is not a
login attempt and is not journaled.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from audit.events import AuditEvent
from directory.http_api import LoginRateLimited
from mailstore.auth import Authenticator, AuthStatus, login_entry
from mailstore.tables import PATIENT

#: The challenge of a 401 (RFC 9110 §11.6.1): this scheme, its realm and the charset of
#: the credentials (RFC 7617 §2, §2.1).
BASIC_CHALLENGE = 'Basic realm="Caducee", charset="UTF-8"'

#: Account kinds that may not search the directory (patients), and the reason code their
#: refused login is journaled with; professionals, their structures and admins may.
API_KINDS_REFUSED = {PATIENT: "patient_api_refused"}

#: Appends one event to the journal (in its own write job; see ``caducee.runner``).
JournalSink = Callable[[AuditEvent], None]


def basic_authenticator(
    authenticator: Authenticator,
    journal: JournalSink | None = None,
) -> Callable[[Request], Awaitable[str | None]]:
    """``authenticate(request) -> address | None`` for :mod:`directory.http_api`.

    ``journal`` receives one login event per request that presents credentials (``None``:
    nothing is journaled, e.g. with the journal turned off).
    """

    async def authenticate(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return None
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        client = request.client.host if request.client else None
        outcome = await authenticator.verify_password(user, password, client)
        if journal is not None:
            journal(login_entry(outcome, user, client_ip=client, protocol="web",
                                refused_kinds=API_KINDS_REFUSED))
        if outcome.status is AuthStatus.RATE_LIMITED:
            raise LoginRateLimited(int(authenticator.limiter.lockout))
        account = outcome.account
        if outcome.status is not AuthStatus.OK or account is None:
            return None
        if account.kind in API_KINDS_REFUSED:
            return None
        return account.address

    return authenticate
