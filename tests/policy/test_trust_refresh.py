"""Reloading the trusted lists from a file and from a loopback HTTPS server."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from caducee import pki
from mailstore import policy_trust
from mailstore.db import Database
from mailstore.trust_refresh import (
    TrustListRefresher,
    TrustSourceError,
    fetch_source,
    resolve_source,
)
from tests.policy.test_trust_list import xml_list
from tests.support.net import async_wait_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HttpsServer:
    def __init__(self, tmp: Path) -> None:
        ca = pki.create_ca("test CA")
        leaf = pki.issue_server(ca, ["localhost", "127.0.0.1"])
        self.ca_file = tmp / "ca.crt"
        pki.write_cert(self.ca_file, ca.cert)
        pki.write_cert(tmp / "srv.crt", leaf.cert)
        pki.write_key(tmp / "srv.key", leaf.key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "srv.crt", tmp / "srv.key")
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        handler = type("H", (_Handler,), {"routes": self.routes})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    server = HttpsServer(tmp_path_factory.mktemp("https"))
    try:
        yield server
    finally:
        server.close()



def test_resolve_source(tmp_path: Path) -> None:
    assert resolve_source("https://x.example/l.xml") == "https://x.example/l.xml"
    assert resolve_source("lists/lb.txt", tmp_path) == str(tmp_path / "lists/lb.txt")
    assert resolve_source("file:///etc/lb.xml") == "/etc/lb.xml"


def test_fetch_over_https(https: HttpsServer) -> None:
    https.routes["/lb.xml"] = (200, {"Content-Type": "application/xml"}, xml_list("a.mssante.fr"))
    https.routes["/moved"] = (302, {"Location": "http://127.0.0.1:1/lb.xml"}, b"")
    assert fetch_source(https.url("/lb.xml"), ca_file=https.ca_file) == xml_list("a.mssante.fr")
    with pytest.raises(TrustSourceError, match="certificate verify failed"):
        fetch_source(https.url("/lb.xml"))  # the system store does not know our CA
    with pytest.raises(TrustSourceError, match="non-https"):
        fetch_source(https.url("/moved"), ca_file=https.ca_file)
    with pytest.raises(TrustSourceError, match="404"):
        fetch_source(https.url("/missing"), ca_file=https.ca_file)
    with pytest.raises(TrustSourceError, match="larger than"):
        fetch_source(https.url("/lb.xml"), ca_file=https.ca_file, max_bytes=10)
    with pytest.raises(TrustSourceError, match="plain http"):
        fetch_source("http://127.0.0.1:1/lb.xml")


async def test_refresher_loads_file_and_https_sources(
    db: Database, https: HttpsServer, tmp_path: Path
) -> None:
    (tmp_path / "plain.txt").write_text("# manuel\nlocal-op.mssante.fr\n", encoding="utf-8")
    https.routes["/refresh.xml"] = (200, {}, xml_list("a.mssante.fr", "santé.mssante.fr"))
    seen: list[frozenset[str]] = []
    refresher = TrustListRefresher(
        db, ["plain.txt", https.url("/refresh.xml"), "missing.txt"], period=3600,
        base_dir=tmp_path, ca_file=https.ca_file, clock=lambda: T0, on_change=seen.append,
    )
    outcomes = await refresher.refresh_once()
    assert [(o.ok, o.added) for o in outcomes] == [(True, 1), (True, 2), (False, 0)]
    assert "cannot read" in outcomes[2].error
    assert seen[-1] == {"local-op.mssante.fr", "a.mssante.fr", "xn--sant-epa.mssante.fr"}

    # the published list changes; a broken download keeps the previous rows
    https.routes["/refresh.xml"] = (200, {}, xml_list("b.mssante.fr"))
    outcomes = await refresher.refresh_once()
    assert (outcomes[1].added, outcomes[1].removed) == (1, 2)
    https.routes["/refresh.xml"] = (200, {}, b"<ListeBlanche>")
    https.routes["/empty.xml"] = (200, {}, xml_list())
    (tmp_path / "empty.txt").write_text("# rien\n", encoding="utf-8")
    refresher.sources += [https.url("/empty.xml"), str(tmp_path / "empty.txt")]
    outcomes = await refresher.refresh_once()
    assert not outcomes[1].ok and "malformed" in outcomes[1].error
    assert not outcomes[3].ok and "no Domaine element" in outcomes[3].error
    assert not outcomes[4].ok and "no domain" in outcomes[4].error
    assert await db.read(policy_trust.trusted_domains) == {"local-op.mssante.fr", "b.mssante.fr"}


async def test_refresher_runs_on_a_schedule(db: Database, tmp_path: Path) -> None:
    source = tmp_path / "lb.txt"
    source.write_text("one.mssante.fr\n", encoding="utf-8")
    refresher = TrustListRefresher(db, [str(source)], period=0.05)
    refresher.start()
    try:
        await async_wait_for(lambda: _has(db, "one.mssante.fr"), what="first load")
        source.write_text("two.mssante.fr\n", encoding="utf-8")
        await async_wait_for(lambda: _has(db, "two.mssante.fr"), what="reload")
    finally:
        await refresher.stop()
    assert refresher.rounds >= 2
    assert await db.read(policy_trust.trusted_domains) == {"two.mssante.fr"}


async def _has(db: Database, domain: str) -> bool:
    return domain in await db.read(policy_trust.trusted_domains)


async def test_refresher_period_zero_loads_once(db: Database, tmp_path: Path) -> None:
    source = tmp_path / "lb.txt"
    source.write_text("once.mssante.fr\n", encoding="utf-8")
    refresher = TrustListRefresher(db, [str(source)], period=0)
    await refresher.start()
    assert refresher.rounds == 1
    await refresher.stop()
