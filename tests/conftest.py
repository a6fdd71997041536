"""Servers and isolation shared by every test.

PostgreSQL and NATS come from DATABASE_URL and NATS_URL, or are started for
the run (testcontainers when Docker answers, otherwise embedded servers). Each
run gets its own database; each test gets its own NATS namespace, so runs
never disturb each other or a running demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
import structlog
from nats.aio.client import Client as NatsClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reconciler.bootstrap import run as run_reconciler
from shared import devservers
from shared.bus import BusNames
from shared.db import admin
from shared.db.engine import make_engine
from shared.db.models import Base
from shared.settings import ReconcilerSettings

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def postgres_server_url(work_dir: Path) -> Iterator[str]:
    with devservers.postgres_url(work_dir) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url(work_dir: Path) -> Iterator[str]:
    with devservers.nats_url(work_dir) as url:
        yield url


@contextlib.asynccontextmanager
async def migrated_database(server_url: str, name: str) -> AsyncIterator[str]:
    """Database `name`, created and migrated to head, dropped afterwards."""
    url = await admin.create_database(server_url, name)
    try:
        await asyncio.to_thread(admin.upgrade, url)
        yield url
    finally:
        await admin.drop_database(server_url, name)


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A database of this run's own, migrated to head."""
    async with migrated_database(
        postgres_server_url, f"inventory_test_{RUN_ID}"
    ) as url:
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The run's database, emptied after the test."""
    yield engine
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def names() -> BusNames:
    """Subjects, streams and buckets of this test's own."""
    return BusNames(namespace=f"t{RUN_ID}{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def nats_client(nats_url: str, names: BusNames) -> AsyncIterator[NatsClient]:
    """A connection whose streams and buckets of this test are deleted after it."""
    client = await nats.connect(nats_url)
    yield client
    js = client.jetstream()
    for stream in await js.streams_info():
        if stream.config.name and names.namespace.lower() in stream.config.name.lower():
            await js.delete_stream(stream.config.name)
    await client.drain()


StartReconciler = Callable[..., Awaitable[None]]


@pytest.fixture
async def start_reconciler(
    db: AsyncEngine,
    database_url: str,
    nats_url: str,
    names: BusNames,
    nats_client: NatsClient,
) -> AsyncIterator[StartReconciler]:
    """Start the reconciler in this process on the test's namespace."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides: object) -> None:
        settings = ReconcilerSettings(
            database_url=database_url,
            nats_url=nats_url,
            nats_namespace=names.namespace,
            reconciler_ack_wait_seconds=3,
            reconciler_workers=2,
            **overrides,
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        running.append(
            (stop, asyncio.create_task(run_reconciler(settings, stop, ready)))
        )
        await asyncio.wait_for(ready.wait(), timeout=20)

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture(autouse=True)
def _reset_log_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
