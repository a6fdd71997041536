"""`python -m shared.db.migrate`: create the database if needed, then migrate it.

Reads DATABASE_URL like the services. Problems end in one line naming the
cause, not a traceback.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from sqlalchemy.engine import make_url

from shared.db import admin
from shared.settings import BaseServiceSettings, load_settings


async def ensure_database(url: str) -> bool:
    """Create the database of `url` when it does not exist; True if created."""
    name = make_url(url).database or "postgres"
    try:
        connection = await asyncpg.connect(admin.asyncpg_dsn(url))
    except asyncpg.InvalidCatalogNameError:
        await admin.create_database(url, name)
        return True
    await connection.close()
    return False


def migrate(url: str) -> bool:
    """Create (if needed) and migrate the database; True if it was created."""
    created = asyncio.run(ensure_database(url))
    admin.upgrade(url)
    return created


def main() -> None:
    settings = load_settings(BaseServiceSettings)
    target = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        created = migrate(settings.database_url)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"cannot migrate {target}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{'created and ' if created else ''}migrated {target} to the latest schema")


if __name__ == "__main__":
    main()
