"""Container health checks: `python -m deploy.healthcheck nats postgres URL...`.

Each argument is `nats` (NATS_URL answers), `postgres` (DATABASE_URL accepts
a query) or an http(s) URL (answers 2xx). Exits 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request

import asyncpg
import nats

from shared.settings import BaseServiceSettings

TIMEOUT_SECONDS = 5


async def check_nats(url: str) -> None:
    client = await nats.connect(
        url, connect_timeout=TIMEOUT_SECONDS, allow_reconnect=False
    )
    await client.flush(timeout=TIMEOUT_SECONDS)
    await client.close()


async def check_postgres(url: str) -> None:
    dsn = "postgresql://" + url.split("://", 1)[1]
    connection = await asyncpg.connect(dsn, timeout=TIMEOUT_SECONDS)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


def check_http(url: str) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{url} answered {response.status}")


async def one_check(check: str, settings: BaseServiceSettings) -> None:
    if check == "nats":
        await check_nats(settings.nats_url)
    elif check == "postgres":
        await check_postgres(settings.database_url)
    elif check.startswith(("http://", "https://")):
        await asyncio.to_thread(check_http, check)
    else:
        raise ValueError("unknown check (nats, postgres or a URL)")


async def run(
    checks: list[str], seconds_each: float = TIMEOUT_SECONDS * 2
) -> list[str]:
    """Run each check; returns one line per failure."""
    settings = BaseServiceSettings()
    failures = []
    for check in checks:
        try:
            async with asyncio.timeout(seconds_each):
                await one_check(check, settings)
        except Exception as error:
            failures.append(f"{check}: {type(error).__name__}: {error}")
    return failures


def main() -> None:
    failures = asyncio.run(run(sys.argv[1:]))
    for failure in failures:
        print(failure, file=sys.stderr)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
