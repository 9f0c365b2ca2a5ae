"""The HTTPS service of `caducee run`: the directory's JSON API, with curl and httpx."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from audit.tables import audit_entry
from tests.support.net import wait_for
from tests.support.platform import InProcessPlatform, PlatformDir, database_url, make_platform_dir

DOCTOR = "claire.martin@demo.mssante.fr"
PASSWORD = "web-api-password-1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PlatformDir, int]]:
    url = database_url(request, request.param)
    pdir = make_platform_dir(tmp_path_factory.mktemp("web"), url)
    pdir.add_account(DOCTOR, PASSWORD)
    plat = InProcessPlatform(pdir).start()
    assert plat.platform is not None
    yield pdir, plat.platform.ports["web"][0]
    plat.stop()


def test_curl_searches_the_directory_over_tls(live) -> None:
    pdir, port = live
    r = subprocess.run(
        ["curl", "-sS", "--cacert", str(pdir.ca), "-u", f"{DOCTOR}:{PASSWORD}",
         f"https://127.0.0.1:{port}/api/directory?q=claire"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    addresses = {m["address"] for hit in body["results"] for m in hit["mailboxes"]}
    assert DOCTOR in addresses, body


def test_refusals_in_french_and_security_headers(live) -> None:
    pdir, port = live
    with httpx.Client(verify=pdir.client_tls(), base_url=f"https://127.0.0.1:{port}") as client:
        anon = client.get("/api/directory", params={"q": "martin"})
        assert anon.status_code == 401
        assert "Authentification requise" in anon.text
        assert anon.headers["www-authenticate"] == 'Basic realm="Caducee", charset="UTF-8"'
        wrong = client.get("/api/directory", params={"q": "martin"}, auth=(DOCTOR, "nope"))
        assert wrong.status_code == 401
        ok = client.get("/healthz")
        assert ok.headers["strict-transport-security"].startswith("max-age=")
        assert ok.headers["x-content-type-options"] == "nosniff"


def test_tls_1_1_refused(live) -> None:
    _, port = live
    r = subprocess.run(["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                        "-connect", f"127.0.0.1:{port}"], input=b"", capture_output=True,
                       timeout=30)
    assert b"Cipher is (NONE)" in r.stdout + r.stderr


def test_web_logins_are_journaled_without_the_password(live) -> None:
    pdir, port = live
    wrong = "wrong-web-password-9"
    with httpx.Client(verify=pdir.client_tls(),
                      base_url=f"https://127.0.0.1:{port}") as client:
        assert client.get("/api/directory", params={"q": "x"}).status_code == 401  # no login
        assert client.get("/api/directory", params={"q": "martin"},
                          auth=(DOCTOR, wrong)).status_code == 401
        assert client.get("/api/directory", params={"q": "martin"},
                          auth=(DOCTOR, PASSWORD)).status_code == 200

    ctx = pdir.context()
    try:
        def web_logins():
            rows = ctx.db.read_sync(lambda c: list(c.execute(
                select(audit_entry).where(audit_entry.c.protocol == "web")
                .order_by(audit_entry.c.seq)).mappings()))
            mine = [r for r in rows if r["actor"] == DOCTOR]
            return rows if {r["action"] for r in mine} >= {"login.failed", "login.succeeded"} \
                else None

        rows: Any = wait_for(web_logins, 10, "the web logins in the journal")
    finally:
        ctx.close()
    failed = [r for r in rows if r["action"] == "login.failed" and r["actor"] == DOCTOR]
    ok = [r for r in rows if r["action"] == "login.succeeded" and r["actor"] == DOCTOR]
    assert (failed[-1]["outcome"], failed[-1]["reason"], failed[-1]["client_ip"]) == (
        "failed", "auth_failed", "127.0.0.1")
    assert (ok[-1]["outcome"], ok[-1]["reason"], ok[-1]["client_ip"]) == ("ok", None, "127.0.0.1")
    assert all(r["actor"] for r in rows), "a request without credentials is not a login"
    text = repr(rows)
    assert wrong not in text and PASSWORD not in text


def test_rate_limited_logins_get_429_with_retry_after(live) -> None:
    """ARCHITECTURE.md §6 ``rate_limited``: HTTP 429, explained in French. From its own
    loopback address and account, so the other tests of the module are not locked out."""
    pdir, port = live
    limit = pdir.config.auth.max_failures
    transport = httpx.HTTPTransport(
        verify=pdir.client_tls(), local_address="127.0.0.42")
    with httpx.Client(transport=transport, base_url=f"https://127.0.0.1:{port}") as client:
        codes = [client.get("/api/directory", params={"q": "x"},
                            auth=("locked.out@demo.mssante.fr", f"wrong-{i}")).status_code
                 for i in range(limit)]
        assert codes == [401] * limit
        r = client.get("/api/directory", params={"q": "x"},
                       auth=("locked.out@demo.mssante.fr", "wrong-again"))
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        assert "Trop de tentatives" in r.json()["error"]
