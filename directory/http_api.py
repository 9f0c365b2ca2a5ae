"""The directory's JSON HTTP API, used by the webmail (issue 6, «Search»).

``GET /api/directory?q=…&profession=…&specialty=…&town=…&postcode=…&departement=…
&identifier=…&address=…&type=…&page=…&per_page=…`` answers::

    {"page": 1, "per_page": 20, "has_more": false, "results": [{"kind": "practitioner", …}]}

401 with a French message and a ``WWW-Authenticate`` challenge when the caller is not
authenticated (RFC 9110 §11.6.1: a 401 must carry one), 429 (with ``Retry-After``) when its
logins are rate-limited (ARCHITECTURE.md §6 ``rate_limited``), 400 with a French message on
bad parameters, 503 when the database cannot answer (``storage_unavailable``), and a French
JSON error for an unknown path (404) or method (405) too. The database work runs on a worker
thread, off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from directory.search import Page, Query, QueryError, search

log = logging.getLogger(__name__)

_PARAMS = {
    "q": "text", "profession": "profession", "specialty": "specialty", "town": "town",
    "postcode": "postcode", "departement": "departement", "identifier": "identifier",
    "address": "address", "type": "mailbox_type",
}
_MAX_PARAM = 200
_HEADERS = {"Cache-Control": "no-store"}
#: French explanations of the errors Starlette raises itself (no route, wrong method).
_HTTP_ERRORS = {
    404: "Ressource introuvable.",
    405: "Méthode non autorisée pour cette ressource.",
}


class LoginRateLimited(Exception):
    """Raised by an ``authenticate`` callable when the caller must wait (HTTP 429)."""

    def __init__(self, retry_after: int = 60) -> None:
        super().__init__("too many failed logins")
        self.retry_after = retry_after


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={**_HEADERS, **(headers or {})}
    )


def _query(request: Request) -> Query:
    params = request.query_params
    unknown = set(params) - set(_PARAMS) - {"page", "per_page"}
    if unknown:
        raise QueryError("Paramètre inconnu : " + ", ".join(sorted(unknown)) + ".")
    values: dict[str, str] = {}
    for name, field in _PARAMS.items():
        value = params.get(name, "")
        if len(value) > _MAX_PARAM:
            raise QueryError(f"Paramètre « {name} » trop long.")
        values[field] = value
    try:
        page = int(params.get("page", "1"))
        per_page = int(params.get("per_page", "20"))
    except ValueError:
        raise QueryError("« page » et « per_page » doivent être des nombres.") from None
    return Query(page=page, per_page=per_page, **values)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_ERRORS.get(exc.status_code, "Requête refusée.")
    return _error(exc.status_code, message, dict(exc.headers or {}))


def create_directory_api(
    engine: Engine, authenticate: Callable[[Request], Awaitable[str | None]], *,
    challenge: str,
) -> Starlette:
    """The API as a Starlette app (mount it, or serve it alone); ``challenge`` is the
    ``WWW-Authenticate`` value of a 401, for the scheme ``authenticate`` accepts."""

    def run(query: Query) -> Page:
        with engine.connect() as conn:
            return search(conn, query)

    async def directory(request: Request) -> JSONResponse:
        try:
            user = await authenticate(request)
        except LoginRateLimited as exc:
            return _error(429, "Trop de tentatives de connexion : réessayez plus tard.",
                          {"Retry-After": str(exc.retry_after)})
        if user is None:
            return _error(401, "Authentification requise pour consulter l'annuaire.",
                          {"WWW-Authenticate": challenge})
        try:
            query = _query(request)
            page = await run_in_threadpool(run, query)
        except QueryError as exc:
            return _error(400, exc.message_fr)
        except OperationalError:  # ARCHITECTURE.md §6 storage_unavailable
            log.warning("directory search: database unavailable", exc_info=True)
            return _error(503, "Annuaire momentanément indisponible : réessayez plus tard.",
                          {"Retry-After": "30"})
        return JSONResponse(
            {
                "page": page.page,
                "per_page": page.per_page,
                "has_more": page.has_more,
                "results": [h.as_json() for h in page.hits],
            },
            headers=_HEADERS,
        )

    return Starlette(
        routes=[Route("/api/directory", directory, methods=["GET"])],
        exception_handlers={HTTPException: _http_error},
    )
