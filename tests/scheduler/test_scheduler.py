"""A scheduler replica against real NATS and PostgreSQL, with a driven clock."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.adapters.nats import STATE_KEY, scheduler_bucket
from shared.bus import BusNames
from shared.events import ScheduleState
from tests.scheduler.conftest import (
    FIRE,
    AccountSeed,
    FakeClock,
    account_ids,
    eventually,
    polls,
    seed_accounts,
    seed_task,
    tasks_created,
)

pytestmark = pytest.mark.usefixtures("db")


async def count_polls(nats_client: NatsClient, names: BusNames) -> int:
    info = await nats_client.jetstream().stream_info(names.polls_stream)
    return info.state.messages


async def schedule_state(nats_client: NatsClient, names: BusNames) -> ScheduleState:
    kv = await scheduler_bucket(nats_client.jetstream(), names)
    entry = await kv.get(STATE_KEY)
    assert entry.value is not None
    return ScheduleState.model_validate_json(entry.value)


async def settled_polls(
    nats_client: NatsClient, names: BusNames, expected: int
) -> int:
    """The number of polls once `expected` are there and a moment has passed."""
    await eventually(lambda: _at_least(nats_client, names, expected))
    await asyncio.sleep(0.1)
    return await count_polls(nats_client, names)


async def _at_least(nats_client: NatsClient, names: BusNames, expected: int) -> bool:
    return await count_polls(nats_client, names) >= expected


async def test_polls_are_published_at_their_due_times_when_the_cron_fires(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(4)))
    clock = FakeClock()
    await start_replica(clock)

    counts = []
    for step in (10, 30, 30, 30):
        await clock.advance(step)
        counts.append(await settled_polls(nats_client, names, len(counts) + 1))

    sent = await polls(nats_client, names)
    assert counts == [1, 2, 3, 4]
    assert [poll["account_id"] for poll in sent] == account_ids(4)
    assert [
        (datetime.fromisoformat(poll["requested_at"]) - FIRE).total_seconds()
        for poll in sent
    ] == [0, 30, 60, 90]
