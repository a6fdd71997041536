"""Fixtures for the reconciler: an asyncpg pool on the run's database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reconciler.bootstrap import asyncpg_dsn


@pytest.fixture
async def pool(database_url: str, db: AsyncEngine) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the run's database, which is emptied after the test."""
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=4)
    yield pool
    await pool.close()
