from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.api import inventory as inv
from services.api.app import make_read_engine
from shared.bus import BusNames
from tests.api.conftest import api_settings


@pytest.fixture
async def read_engine(
    database_url: str, names: BusNames, nats_url: str
) -> AsyncIterator[AsyncEngine]:
    engine = make_read_engine(api_settings(database_url, names, nats_url))
    yield engine
    await engine.dispose()


async def test_read_sessions_see_one_state_in_utc_with_generic_plans(
    read_engine: AsyncEngine,
) -> None:
    async with async_sessionmaker(read_engine)() as session:
        settings = (
            await session.execute(
                text(
                    "SELECT current_setting('transaction_isolation'),"
                    " current_setting('transaction_read_only'),"
                    " current_setting('TimeZone'),"
                    " current_setting('plan_cache_mode')"
                )
            )
        ).one()

    assert tuple(settings) == ("repeatable read", "on", "UTC", "force_generic_plan")


async def test_a_page_writes_its_size_into_the_sql_when_plans_are_generic(
    read_engine: AsyncEngine, db: AsyncEngine
) -> None:
    async with async_sessionmaker(read_engine)() as session:
        await inv.page(session, inv.ENIS, inv.Filters(), 7, None)
        prepared = (
            await session.execute(text("SELECT statement FROM pg_prepared_statements"))
        ).scalars()
        pages = [sql for sql in prepared if "FROM enis" in sql]

    assert len(pages) == 1
    assert "LIMIT 8" in pages[0]
