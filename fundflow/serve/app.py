"""The Starlette application of ``fundflow serve``.

:func:`create_app` mounts the API (:data:`fundflow.serve.api.OPS`) under
``/api/v1``, the web page at ``/`` and its assets under ``/static/``
(package data: HTML, CSS and JavaScript modules, nothing fetched from
elsewhere). Every response carries the security headers of
:data:`SECURITY_HEADERS` (a Content-Security-Policy that allows only this
origin and no inline script or style, no framing, no sniffing, no
referrer). Errors under ``/api`` are always JSON ``{"error", "detail"}``:
an unknown route is 404, a wrong method 405, and anything unforeseen 500
``internal`` without a trace (logged).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import OPS, Op, endpoint
from .http import ApiError, error_response
from .openapi import PREFIX
from .state import ServeSettings, ServeState

STATIC = Path(__file__).parent / "static"
# What an alert or case id may be in a deep link (alert ids are hex, case ids digits).
_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
log = logging.getLogger("fundflow.serve")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, add)


def _dispatch(ops: list[Op]) -> Any:
    by_method = {op.method: endpoint(op) for op in ops}

    async def run(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return run


def api_routes() -> list[Route]:
    """One route per path of :data:`OPS` (its methods dispatched)."""
    grouped: dict[str, list[Op]] = {}
    for op in OPS:
        grouped.setdefault(op.path, []).append(op)
    return [
        Route(path, _dispatch(ops), methods=[op.method for op in ops])
        for path, ops in grouped.items()
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/") and exc.status_code == 404:
        return Response("not found\n", status_code=404, media_type="text/plain")
    reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(ApiError(exc.status_code, reason, str(exc.detail), exc.headers))


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("fundflow serve: %s %s failed", request.method, request.url.path)
    return error_response(ApiError(500, "internal", "the server failed; see its log"))


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


async def _deep_link(request: Request) -> Response:
    """``/alerts/<id>`` and ``/cases/<id>`` (the links Grafana's alert tables
    and webhook receivers give) open that page of the web app; the page asks
    for sign-in first and then shows it."""
    kind = "alert" if request.url.path.startswith("/alerts/") else "case"
    ident = request.path_params["ident"]
    if not _LINK_ID.fullmatch(ident):
        return Response("not found\n", status_code=404, media_type="text/plain")
    return RedirectResponse(f"/#/{kind}/{ident}", status_code=302)


def create_app(settings: ServeSettings, state: ServeState | None = None) -> Starlette:
    """The app over ``settings.db``; ``state`` may be given (tests)."""
    serve_state = state or ServeState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        serve_state.close()

    app = Starlette(
        routes=[
            Mount(PREFIX, routes=api_routes()),
            Route("/", _index, methods=["GET"]),
            Route("/alerts/{ident}", _deep_link, methods=["GET"]),
            Route("/cases/{ident}", _deep_link, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
        lifespan=lifespan,
    )
    app.state.serve = serve_state
    app.add_middleware(SecurityHeaders)
    return app
