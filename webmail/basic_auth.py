"""HTTP Basic authentication (RFC 7617) for API clients, over TLS only, with the same
rate-limited, cached verification as SMTP and IMAP (mailstore.auth)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from mailstore.auth import Authenticator, AuthStatus
from mailstore.tables import PATIENT

#: Account kinds that may search the directory (professionals, their structures, admins).
API_KINDS_REFUSED = frozenset({PATIENT})


def basic_authenticator(
    authenticator: Authenticator,
) -> Callable[[Request], Awaitable[str | None]]:
    """``authenticate(request) -> address | None`` for :mod:`directory.http_api`."""

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
        if outcome.status is not AuthStatus.OK or outcome.account is None:
            return None
        if outcome.account.kind in API_KINDS_REFUSED:
            return None
        return outcome.account.address

    return authenticate
