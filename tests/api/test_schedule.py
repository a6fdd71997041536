from __future__ import annotations

import json

import httpx
from nats.aio.client import Client as NatsClient

from shared.bus import BusNames, ensure_poller_consumer
from tests.api.conftest import READER


async def get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await client.get(f"/api/v1{path}", headers=READER)


async def test_schedule_says_so_when_the_scheduler_wrote_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await get(client, "/schedule")

    assert response.status_code == 200
    assert response.json() == {
        "available": False,
        "state": None,
        "poll_queue": {"known": False, "pending": None, "running": None},
    }


async def test_schedule_shows_next_run_and_queue_when_the_scheduler_runs(
    client: httpx.AsyncClient, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, max_concurrent=2)
    bucket = await js.create_key_value(bucket=names.scheduler_bucket)
    state = {
        "enabled": True,
        "cron": "0 * * * *",
        "stagger_seconds": 30,
        "max_concurrent": 2,
        "next_run_at": "2026-01-05T11:00:00Z",
        "updated_at": "2026-01-05T10:00:01Z",
    }
    await bucket.put("schedule", json.dumps(state).encode())
    for n in range(3):
        await js.publish(names.account_poll, f"poll {n}".encode())

    response = await get(client, "/schedule")

    body = response.json()
    assert body["available"] is True
    assert body["state"]["next_run_at"] == "2026-01-05T11:00:00Z"
    assert body["state"]["cron"] == "0 * * * *"
    assert body["poll_queue"] == {"known": True, "pending": 3, "running": 0}
    await js.delete_key_value(names.scheduler_bucket)
