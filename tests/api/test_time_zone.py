from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusNames
from tests.api import seed
from tests.api.conftest import READER, add_reader_token, api_settings, serve_in_process


@pytest.fixture
async def database_in_kolkata(inventory: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The seeded database, with a server time zone other than UTC."""
    async with inventory.connect() as connection:
        name = (await connection.execute(text("SELECT current_database()"))).scalar()
        await connection.execute(text(f'ALTER DATABASE "{name}" SET TimeZone = +5.5'))
        await connection.commit()
    yield inventory
    async with inventory.connect() as connection:
        await connection.execute(text(f'ALTER DATABASE "{name}" RESET TimeZone'))
        await connection.commit()


async def test_times_are_answered_in_utc_whatever_the_database_time_zone(
    database_in_kolkata: AsyncEngine, database_url: str, names: BusNames, nats_url: str
) -> None:
    await add_reader_token(database_in_kolkata)
    settings = api_settings(database_url, names, nats_url)
    async with serve_in_process(settings) as client:
        eni = (await client.get(f"/api/v1/enis/{seed.ENI_1}", headers=READER)).json()
        lookup = (await client.get("/api/v1/ip/10.1.1.11", headers=READER)).json()

    assert eni["first_seen_at"].endswith("Z"), eni["first_seen_at"]
    assert lookup["matches"][0]["eni"] == eni
