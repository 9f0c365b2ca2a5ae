"""The JSON API's error answers over a real uvicorn server: every error is JSON with a
French explanation, a 401 carries its challenge, an unavailable database is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from starlette.requests import Request

from directory.http_api import create_directory_api
from mailstore.db import create_db_engine
from tests.support.net import serve_asgi

TOKEN = "Basic Y2xhaXJlOnNlY3JldA=="
BASIC_CHALLENGE = 'Basic realm="test"'


async def authenticate(request: Request) -> str | None:
    return "claire.martin@demo.mssante.fr" if request.headers.get("authorization") == TOKEN else None


def _serve(engine: Engine) -> Iterator[str]:
    with serve_asgi(create_directory_api(engine, authenticate, challenge=BASIC_CHALLENGE), log_level="critical") as url:
        yield url


@pytest.fixture
def api(engine: Engine) -> Iterator[str]:
    yield from _serve(engine)


@pytest.fixture
def broken_api(tmp_path: Path) -> Iterator[str]:
    """The API over a database that cannot be opened (its directory does not exist)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'missing' / 'caducee.db'}")
    try:
        yield from _serve(engine)
    finally:
        engine.dispose()


def test_unauthenticated_answer_carries_a_challenge(api: str) -> None:
    """RFC 9110 §11.6.1: a 401 must say how to authenticate (clients and browsers only
    send credentials once challenged)."""
    r = httpx.get(f"{api}/api/directory", params={"q": "martin"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == BASIC_CHALLENGE
    assert r.json() == {"error": "Authentification requise pour consulter l'annuaire."}


def test_unknown_path_and_method_are_explained_in_french(api: str) -> None:
    with httpx.Client(base_url=api, headers={"Authorization": TOKEN}) as client:
        r = client.post("/api/directory", params={"q": "martin"})
        assert r.status_code == 405
        assert r.headers["content-type"] == "application/json"
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
        assert r.json() == {"error": "Méthode non autorisée pour cette ressource."}
        r = client.get("/api/annuaire")
        assert r.status_code == 404
        assert r.json()["error"].startswith("Ressource introuvable")


def test_database_unavailable_is_503(broken_api: str) -> None:
    """ARCHITECTURE.md §6 storage_unavailable: HTTP 503, not a bare 500."""
    r = httpx.get(f"{broken_api}/api/directory", params={"q": "martin"},
                  headers={"Authorization": TOKEN})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert r.json() == {"error": "Annuaire momentanément indisponible : réessayez plus tard."}
