"""The HTTPS listener (Starlette on uvicorn, in the platform's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator, Sequence

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from directory.http_api import create_directory_api
from mailstore.auth import Authenticator
from webmail.basic_auth import BASIC_CHALLENGE, JournalSink, basic_authenticator

log = logging.getLogger(__name__)

#: Sent with every response (ARCHITECTURE.md §5).
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    engine: Engine, authenticator: Authenticator, journal: JournalSink | None = None
) -> Starlette:
    """The HTTPS application; ``journal`` receives the web login events (basic_auth)."""
    api = create_directory_api(engine, basic_authenticator(authenticator, journal),
                               challenge=BASIC_CHALLENGE)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/healthz", health), Mount("/", app=api)],
        middleware=[Middleware(SecurityHeaders)],
    )


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Server(uvicorn.Server):
    """uvicorn inside our process: the platform owns the signals (SIGTERM → graceful stop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebService:
    def __init__(
        self, servers: list[_Server], tasks: list[asyncio.Task[None]], ports: list[int]
    ) -> None:
        self._servers = servers
        self._tasks = tasks
        self.ports = ports

    async def close(self, grace: float = 5.0) -> None:
        for s in self._servers:
            s.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def start_web(
    app: Starlette, *, listen: Sequence[tuple[str, int]], ssl_context: ssl.SSLContext
) -> WebService:
    """Serve ``app`` over HTTPS on each address (TLS 1.2+ with our context)."""
    servers: list[_Server] = []
    tasks: list[asyncio.Task[None]] = []
    ports: list[int] = []
    for host, port in listen:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
        sock.setblocking(False)
        ports.append(int(sock.getsockname()[1]))
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False,
            ws="none",  # no WebSocket route: do not load a WebSocket library
            proxy_headers=False, timeout_graceful_shutdown=5,
        )
        config.load()
        config.ssl = ssl_context  # our TLS 1.2+ context, not uvicorn's defaults
        server = _Server(config)
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name=f"web-{port}"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    for server, task in zip(servers, tasks, strict=True):
        while not server.started:  # uvicorn offers no "started" event to wait on
            if task.done() or loop.time() > deadline:
                raise RuntimeError("the HTTPS listener did not start")
            await asyncio.sleep(0.01)
    log.info("web listening", extra={"ports": ports})
    return WebService(servers, tasks, ports)
