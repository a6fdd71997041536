"""The migrations build exactly what the models describe, and undo it."""

from __future__ import annotations

import asyncio
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from shared.db import admin
from shared.db.engine import make_engine
from shared.db.models import Base


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    await engine.dispose()

    assert differences == []


async def test_upgrade_from_empty_then_downgrade_to_base(
    postgres_server_url: str,
) -> None:
    name = f"inventory_migrate_{uuid.uuid4().hex[:8]}"
    url = await admin.create_database(postgres_server_url, name)
    engine = make_engine(url)
    try:
        await asyncio.to_thread(admin.upgrade, url)
        async with engine.connect() as connection:
            after_upgrade = await connection.run_sync(_tables)
        await asyncio.to_thread(admin.downgrade, url)
        async with engine.connect() as connection:
            after_downgrade = await connection.run_sync(_tables)
    finally:
        await engine.dispose()
        await admin.drop_database(postgres_server_url, name)

    assert set(Base.metadata.tables) <= after_upgrade
    assert after_downgrade <= {"alembic_version"}
