"""An API wired to the run's database and this test's NATS namespace."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.app import create_app, make_read_engine, open_runtime
from shared.bus import BusNames
from shared.db.models import ApiToken, Base
from shared.devservers import free_port
from shared.settings import ApiSettings
from tests.api import seed
from tests.api.responder import ContractResponder

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
READER_TOKEN = "test-reader-token-0123456789abcdef"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)
READER = bearer(READER_TOKEN)


def api_settings(database_url: str, names: BusNames, nats_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=database_url,
        nats_url=nats_url,
        nats_namespace=names.namespace,
        api_admin_token=ADMIN_TOKEN,
        api_command_timeout_seconds=2,
    )


async def add_reader_token(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(ApiToken).values(
                id="00000000-0000-4000-8000-0000000000aa",
                name="dashboards",
                role="reader",
                token_sha256=hashlib.sha256(READER_TOKEN.encode()).hexdigest(),
            )
        )


@contextlib.asynccontextmanager
async def serve_in_process(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, in this process and event loop."""
    engine = make_read_engine(settings)
    runtime = await open_runtime(settings, engine)
    app = create_app(settings, runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api"
        ) as http:
            yield http
    finally:
        await runtime.nats.drain()
        await engine.dispose()


@pytest.fixture
async def client(
    database_url: str,
    db: AsyncEngine,
    names: BusNames,
    nats_url: str,
    nats_client: NatsClient,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on an empty inventory, with an admin and a reader token."""
    await add_reader_token(db)
    async with serve_in_process(api_settings(database_url, names, nats_url)) as http:
        yield http


@pytest.fixture(scope="module")
async def seeded_client(
    database_url: str, engine: AsyncEngine, nats_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the seeded inventory and tasks, shared by a module that only reads."""
    await add_reader_token(engine)
    await seed.seed_inventory(engine)
    await seed.seed_tasks(engine)
    names = BusNames(namespace=f"read{uuid.uuid4().hex[:12]}")
    try:
        async with serve_in_process(
            api_settings(database_url, names, nats_url)
        ) as http:
            yield http
    finally:
        await truncate_all(engine)


@pytest.fixture
async def responder(
    nats_client: NatsClient, names: BusNames, db: AsyncEngine
) -> AsyncIterator[ContractResponder]:
    """Answers the API's commands as the reconciler and scheduler would."""
    responder = ContractResponder(nats_client, names, db)
    await responder.start()
    yield responder
    await responder.stop()


@pytest.fixture
async def inventory(db: AsyncEngine) -> AsyncEngine:
    await seed.seed_inventory(db)
    return db


async def truncate_all(engine: AsyncEngine) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} CASCADE"))


@contextlib.contextmanager
def run_server(
    database_url: str, names: BusNames, nats_url: str, log_path: Path
) -> Iterator[str]:
    """`python -m services.api` in a process of its own; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "NATS_NAMESPACE": names.namespace,
        "API_ADMIN_TOKEN": ADMIN_TOKEN,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_COMMAND_TIMEOUT_SECONDS": "2",
        "LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.api"], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def live_server(
    database_url: str, names: BusNames, nats_url: str, tmp_path: Path
) -> Iterator[str]:
    """The API as its own process, on this test's NATS namespace."""
    with run_server(database_url, names, nats_url, tmp_path / "api.log") as url:
        yield url


@pytest.fixture(scope="module")
def module_server(
    database_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API as its own process, shared by a module's tests."""
    names = BusNames(namespace=f"srv{uuid.uuid4().hex[:12]}")
    log = tmp_path_factory.mktemp("api") / "api.log"
    with run_server(database_url, names, nats_url, log) as url:
        yield url


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API did not start:\n{log.read_text()}")
