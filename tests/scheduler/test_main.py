"""`python -m services.scheduler` as a process: start-up checks, kill and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusNames
from shared.events import CommandReply, StartCycle
from tests.scheduler.conftest import (
    AccountSeed,
    account_ids,
    eventually,
    polls,
    recorded_rows,
    seed_accounts,
    tasks_created,
)

ROOT = Path(__file__).resolve().parents[2]


def environment(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "NATS_NAMESPACE"}
    env.update(variables)
    return env


@pytest.mark.parametrize("cron", ["every hour", "61 * * * *", "0 0 31 2 *"])
def test_start_fails_naming_the_variable_when_the_cron_is_invalid(cron: str) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "services.scheduler"],
        cwd=ROOT,
        env=environment(SCHEDULED_POLLING_CRON=cron),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "SCHEDULED_POLLING_CRON" in result.stderr


@pytest.fixture
async def scheduler_process(
    database_url: str, nats_url: str, names: BusNames, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start `python -m services.scheduler` processes; all are killed after."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(**variables: str) -> asyncio.subprocess.Process:
        log = (tmp_path / f"scheduler-{len(processes)}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.scheduler",
            cwd=ROOT,
            env=environment(
                DATABASE_URL=database_url,
                NATS_URL=nats_url,
                NATS_NAMESPACE=names.namespace,
                LOG_LEVEL="DEBUG",
                LOG_FORMAT="json",
                **variables,
            ),
            stdout=log,
            stderr=log,
        )
        processes.append(process)
        return process

    yield start

    for process in processes:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def request_start_cycle(nats_client: NatsClient, names: BusNames) -> CommandReply:
    """Ask for a cycle, retrying while the process is still starting."""
    body = StartCycle(requested_by="operator").model_dump_json().encode()

    async def ask() -> CommandReply | None:
        try:
            reply = await nats_client.request(
                names.scheduler_start_cycle, body, timeout=5
            )
        except Exception:
            return None
        return CommandReply.model_validate_json(reply.data)

    reply: CommandReply = await eventually(ask, within=60, interval=0.2)
    return reply


async def poll_count(nats_client: NatsClient, names: BusNames) -> int:
    try:
        info = await nats_client.jetstream().stream_info(names.polls_stream)
    except Exception:
        return 0
    return info.state.messages


@pytest.mark.usefixtures("db")
async def test_a_killed_process_restarted_mid_cycle_polls_every_account_once(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    scheduler_process: Callable[..., Any],
    start_reconciler: Callable[..., Any],
) -> None:
    ids = account_ids(8)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    settings = {
        "SCHEDULED_POLLING_CRON": "0 0 1 1 *",
        "SCHEDULED_POLLING_STAGGER_SECONDS": "0.4",
    }
    first = await scheduler_process(**settings)
    reply = await request_start_cycle(nats_client, names)

    async def some_published() -> bool:
        return await poll_count(nats_client, names) >= 2

    await eventually(some_published, within=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    at_kill = await poll_count(nats_client, names)
    await scheduler_process(**settings)

    async def all_published() -> bool:
        return await poll_count(nats_client, names) >= len(ids)

    await eventually(all_published, within=60)
    await asyncio.sleep(1.0)

    sent = await polls(nats_client, names)
    created = await tasks_created(nats_client, names)
    rows = await recorded_rows(db, nats_client, names, start_reconciler)
    assert reply.ok and 2 <= at_kill < len(ids)
    assert [poll["account_id"] for poll in sent] == ids
    assert len({poll["task_id"] for poll in sent}) == len(ids)
    assert [task["account_id"] for task in created] == [None, *ids]
    assert [row["account_id"] for row in rows] == [None, *ids]
    due = {
        task["task_id"]: datetime.fromisoformat(task["not_before"])
        for task in created
        if task["account_id"]
    }
    assert all(
        datetime.fromisoformat(poll["requested_at"]) >= due[poll["task_id"]]
        for poll in sent
    )
    assert sorted(due.values())[-1] - sorted(due.values())[0] == timedelta(
        seconds=0.4 * (len(ids) - 1)
    )
