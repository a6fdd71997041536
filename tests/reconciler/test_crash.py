"""A reconciler killed in the middle of an apply loses nothing and commits nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
from nats.aio.client import Client as NatsClient

from services.reconciler.bootstrap import asyncpg_dsn
from shared.bus import BusNames
from shared.events import RegionSnapshot
from tests.reconciler.factories import (
    REGION,
    A,
    at,
    create,
    discovered,
    eni,
    eventually,
    ids,
)

Process = asyncio.subprocess.Process


@asynccontextmanager
async def reconciler_process(
    database_url: str, nats_url: str, names: BusNames
) -> AsyncIterator[Process]:
    """`python -m services.reconciler` on the test's namespace, once it is ready."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        NATS_URL=nats_url,
        NATS_NAMESPACE=names.namespace,
        RECONCILER_ACK_WAIT_SECONDS="2",
        LOG_FORMAT="json",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reconciler",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"reconciler_ready" not in await process.stderr.readline():
                assert process.returncode is None
        drain = asyncio.create_task(process.stderr.read())  # never block its logging
        yield process
        drain.cancel()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await process.wait()


async def waiting_on_region_lock(pool: asyncpg.Pool) -> Callable[[], object]:
    async def check() -> bool:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%pg_advisory_xact_lock%' AND datname = current_database()"
        )
        return bool(waiting)

    return check


async def test_old_state_stays_then_new_applies_when_killed_mid_apply_and_redelivered(
    pool: asyncpg.Pool,
    database_url: str,
    nats_url: str,
    names: BusNames,
    nats_client: NatsClient,
) -> None:
    js = nats_client.jetstream()
    old = RegionSnapshot(enis=[eni("eni-old", A, "s", "v")])
    new = RegionSnapshot(enis=[eni("eni-new", A, "s", "v", "10.0.0.20")])
    async with reconciler_process(database_url, nats_url, names):
        await create(nats_client, names, A, [REGION])
        await js.publish(
            names.resources_discovered,
            discovered(A, old, at(0)).model_dump_json().encode(),
        )
        await eventually(lambda: ids(pool, "enis", "eni_id"))

    # Hold the region's lock so the next apply stops inside its transaction.
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    blocking = blocker.transaction()
    await blocking.start()
    await blocker.execute(
        "SELECT pg_advisory_xact_lock(hashtext('inventory.region'), hashtext($1))",
        REGION,
    )
    async with reconciler_process(database_url, nats_url, names) as process:
        await js.publish(
            names.resources_discovered,
            discovered(A, new, at(60)).model_dump_json().encode(),
        )
        await eventually(await waiting_on_region_lock(pool))
        process.kill()
        await process.wait()
    await blocking.rollback()
    await blocker.close()
    after_crash = await ids(pool, "enis", "eni_id")

    async with reconciler_process(database_url, nats_url, names):
        await eventually(
            lambda: pool.fetchval(
                "SELECT count(*) = 1 FROM enis WHERE eni_id = 'eni-new'"
            )
        )
        after_redelivery = await ids(pool, "enis", "eni_id")

    assert after_crash == {"eni-old"}
    assert after_redelivery == {"eni-new"}
