"""The JSON API over a real uvicorn server, driven with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from starlette.requests import Request

from directory.http_api import create_directory_api
from tests.directory.conftest import Extract, run_import
from tests.support.net import serve_asgi

TOKEN = "Bearer s3cret"


async def authenticate(request: Request) -> str | None:
    return "claire.martin@demo.mssante.fr" if request.headers.get("authorization") == TOKEN else None


@pytest.fixture
def api(engine: Engine, demo_extract: Extract, tmp_path: Path) -> Iterator[str]:
    run_import(engine, demo_extract.person, demo_extract.mailbox)
    with serve_asgi(create_directory_api(engine, authenticate, challenge="Bearer")) as url:
        yield url


def test_search_api(api: str) -> None:
    with httpx.Client(base_url=api, headers={"Authorization": TOKEN}) as client:
        r = client.get("/api/directory", params={"q": "le fevre", "profession": "médecin"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["page"] == 1 and body["per_page"] == 20
        paul = [h for h in body["results"]
                if h["mailboxes"] == [{"address": "paul.lefevre@demo.mssante.fr", "type": "PER"}]]
        assert paul and paul[0]["kind"] == "practitioner" and paul[0]["professions"] == ["Médecin"]
        assert paul[0]["places"][0]["town"] == "Paris"

        r = client.get("/api/directory", params={"q": "pharmacie centrale"})
        assert r.json()["results"][0]["mailboxes"][0]["address"] == (
            "pharmacie.centrale@demo.mssante.fr")

        r = client.get("/api/directory", params={"q": "martin", "per_page": 2, "page": 1})
        assert len(r.json()["results"]) == 2 and r.json()["has_more"] is True


def test_errors_are_french(api: str) -> None:
    with httpx.Client(base_url=api) as client:
        r = client.get("/api/directory", params={"q": "martin"})
        assert r.status_code == 401
        assert r.json() == {"error": "Authentification requise pour consulter l'annuaire."}
        client.headers["Authorization"] = TOKEN
        for params in ({}, {"q": "x", "page": "deux"}, {"profession": "plombier"},
                       {"q": "x", "colour": "blue"}, {"q": "x" * 300}):
            r = client.get("/api/directory", params=params)
            assert r.status_code == 400, params
            assert r.json()["error"].endswith(".")
        assert client.get("/api/directory", params={"profession": "plombier"}).json() == {
            "error": "Profession inconnue : « plombier »."}
