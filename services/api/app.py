"""The one place that wires the API: settings, database, NATS, routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import structlog
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.auth import token_sha256
from services.api.commands import CommandSender
from services.api.deps import Runtime, reject_unknown_query
from services.api.errors import install_error_handlers
from services.api.routes import accounts, health, inventory, pages, polls, tasks, tokens
from shared.bus import BusNames
from shared.settings import ApiSettings

log = structlog.get_logger(__name__)

DESCRIPTION = """
What is in the VPCs of every account, who owns it, and which resource holds an IP.

Every endpoint but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`.
A `reader` token may read; an `admin` token may also change accounts, start
polls and manage tokens. Lists answer `{"items": [...], "next_cursor": ...}`:
pass `next_cursor` back as `cursor` for the next page. Every error answers
`ErrorBody` (`code`, `message`, and for bad input `fields`).
"""


def make_read_engine(settings: ApiSettings) -> AsyncEngine:
    """Read-only and repeatable-read: a request sees one committed state.

    Both are the sessions' defaults, set once per connection rather than by
    statements around every request. No pre-ping (it would add three round
    trips to every request): after a database restart a request on a stale
    connection answers 503 and the pool drops its connections at once.
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
            await app.state.runtime.nats.drain()
            await engine.dispose()

    app = FastAPI(
        title="Network inventory",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(reject_unknown_query)])
    for module in (accounts, polls, tasks, inventory, tokens):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.add_middleware(RequestLog)
    return app


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
