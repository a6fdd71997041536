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
from shared.db.migrate import migrate
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


async def test_migrate_creates_a_missing_database_then_leaves_it_be(
    postgres_server_url: str,
) -> None:
    name = f"inventory_new_{uuid.uuid4().hex[:8]}"
    url = admin.with_database(postgres_server_url, name)
    try:
        created_first = await asyncio.to_thread(migrate, url)
        created_again = await asyncio.to_thread(migrate, url)
        engine = make_engine(url)
        async with engine.connect() as connection:
            tables = await connection.run_sync(_tables)
        await engine.dispose()
    finally:
        await admin.drop_database(postgres_server_url, name)

    assert (created_first, created_again) == (True, False)
    assert set(Base.metadata.tables) <= tables
