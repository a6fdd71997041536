"""The one place that wires the API: settings, database, NATS, routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import structlog
import swagger_ui_bundle
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.auth import token_sha256
from services.api.commands import CommandSender
from services.api.deps import Runtime, reject_unknown_query
from services.api.errors import MAX_BODY_BYTES, install_error_handlers, too_large
from services.api.routes import accounts, health, inventory, pages, polls, tasks, tokens
from shared.bus import BusNames, close_connection
from shared.settings import ApiSettings

log = structlog.get_logger(__name__)

DOCS_ASSETS = "/docs-assets"

DESCRIPTION = """
What is in the VPCs of every account, who owns it, and which resource holds an IP.

Every endpoint but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`.
A `reader` token may read; an `admin` token may also change accounts, start
polls and manage tokens. Lists answer `{"items": [...], "next_cursor": ...}`:
pass `next_cursor` back as `cursor` for the next page. Every error answers
`ErrorBody` (`code`, `message`, and for bad input `fields`).
"""


def make_read_engine(settings: ApiSettings) -> AsyncEngine:
    """Read-only and repeatable-read: a request sees one committed state, in UTC.

    These are the sessions' defaults, set once per connection rather than by
    statements around every request. Prepared statements run generic plans:
    the API's statements are fixed shapes over indexes that fit them whatever
    the values, and planning the IP lookup or a page costs as much as running
    it (LIMITs are written into the SQL, see `rows_at_most`). No pre-ping (it
    would add three round trips to every request): after a database restart
    a request on a stale connection answers 503 and the pool drops its
    connections at once.
    """
    return create_async_engine(
        settings.database_url,
        pool_size=10,
        max_overflow=10,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "default_transaction_isolation": "repeatable read",
                "default_transaction_read_only": "on",
                # Timestamps in JSON built by PostgreSQL come out in UTC.
                "TimeZone": "UTC",
                "plan_cache_mode": "force_generic_plan",
            }
        },
    )


async def open_runtime(settings: ApiSettings, engine: AsyncEngine) -> Runtime:
    client = await nats.connect(
        settings.nats_url, name="inventory-api", max_reconnect_attempts=-1
    )
    admin = settings.api_admin_token
    return Runtime(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        nats=client,
        js=client.jetstream(),
        names=BusNames(settings.nats_namespace),
        commands=CommandSender(client, settings.api_command_timeout_seconds),
        admin_token_sha256=token_sha256(admin.get_secret_value()) if admin else None,
    )


def create_app(settings: ApiSettings, runtime: Runtime | None = None) -> FastAPI:
    """The application; `runtime` is made at start unless one is given (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            yield
            return
        engine = make_read_engine(settings)
        app.state.runtime = await open_runtime(settings, engine)
        log.info("api_started", admin_token_set=settings.api_admin_token is not None)
        try:
            yield
        finally:
            await close_connection(app.state.runtime.nats)
            await engine.dispose()

    app = FastAPI(
        title="Network inventory",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _serve_docs_offline(app)
    if runtime is not None:
        app.state.runtime = runtime
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(reject_unknown_query)])
    for module in (inventory, accounts, polls, tasks, tokens):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestLog)
    return app


def _serve_docs_offline(app: FastAPI) -> None:
    """Swagger UI at /docs from files shipped in a package, not from a CDN,
    so the docs work on networks without internet access."""
    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


class RequestLog:
    """One line per request: method, path, status, time; never headers or body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )


class BodyLimit:
    """Refuse a request body over `MAX_BODY_BYTES` before reading it all.

    A declared length over the limit is refused unread; a body sent without one
    is read up to the limit, then refused, or handed on as it came.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > MAX_BODY_BYTES:
                await too_large()(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server holds it to that
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES:
                await too_large()(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {
                "type": "http.request",
                "body": b"".join(chunks),
                "more_body": False,
            }

        await self.app(scope, replay, send)
