"""A clock the tests drive, account seeding, and scheduler replicas in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.app import SchedulerApp, build, schedule_config
from services.scheduler.service import ScheduleConfig
from shared.bus import BusNames
from shared.settings import SchedulerSettings

START = datetime(2026, 1, 1, 11, 59, 50, tzinfo=UTC)
"""Ten seconds before the default cron's next fire (12:00)."""

FIRE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: datetime = START) -> None:
        self._now = now
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, future))
        await future

    def sleepers(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time on and wake every sleeper whose time has come."""
        self._now += timedelta(seconds=seconds)
        due = [(w, f) for w, f in self._sleepers if w <= self._now]
        self._sleepers = [(w, f) for w, f in self._sleepers if w > self._now]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        await asyncio.sleep(0)


async def eventually(
    check: Callable[[], Any], within: float = 10.0, interval: float = 0.02
) -> Any:
    """Wait (really, briefly) until `check()` (sync or async) returns truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


@dataclass
class AccountSeed:
    account_id: str
    auth_method: str = "instance_role"
    is_active: bool = True
    role_name: str | None = "PaloInventoryInspectionRole"
    role_arn: str | None = None
    regions: list[str] = field(default_factory=lambda: ["us-east-1"])


async def seed_accounts(engine: AsyncEngine, *accounts: AccountSeed) -> None:
    async with engine.begin() as connection:
        for account in accounts:
            await connection.execute(
                text(
                    "INSERT INTO accounts (account_id, account_name, auth_method, "
                    "is_active, default_role_name, role_arn, default_regions) "
                    "VALUES (:id, :name, :auth, :active, :role, :arn, :regions)"
                ),
                {
                    "id": account.account_id,
                    "name": f"account {account.account_id}",
                    "auth": account.auth_method,
                    "active": account.is_active,
                    "role": account.role_name,
                    "arn": account.role_arn,
                    "regions": account.regions,
                },
            )


async def seed_task(
    engine: AsyncEngine, account_id: str, status: str = "running"
) -> uuid.UUID:
    task = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO discovery_tasks (id, kind, account_id, status) "
                "VALUES (:id, 'account_poll', :account, :status)"
            ),
            {"id": task, "account": account_id, "status": status},
        )
    return task


def account_ids(count: int, first: int = 100000000001) -> list[str]:
    return [str(first + i) for i in range(count)]


@dataclass(frozen=True)
class Stored:
    """A message as JetStream keeps it."""

    subject: str
    msg_id: str | None
    body: dict[str, Any]


async def stored_messages(nats_client: NatsClient, stream: str) -> list[Stored]:
    """Every message still in `stream`, oldest first."""
    js = nats_client.jetstream()
    info = await js.stream_info(stream)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, seq)
        except Exception:
            continue
        msg_id = (raw.headers or {}).get("Nats-Msg-Id")
        messages.append(Stored(raw.subject, msg_id, json.loads(raw.data or b"{}")))
    return messages


async def polls(nats_client: NatsClient, names: BusNames) -> list[dict[str, Any]]:
    return [m.body for m in await stored_messages(nats_client, names.polls_stream)]


async def announcements(nats_client: NatsClient, names: BusNames) -> list[Stored]:
    """The `tasks.created` and `tasks.created_batch` messages, oldest first."""
    subjects = (names.tasks_created, names.tasks_created_batch)
    return [
        message
        for message in await stored_messages(nats_client, names.discovery_stream)
        if message.subject in subjects
    ]


async def tasks_created(
    nats_client: NatsClient, names: BusNames
) -> list[dict[str, Any]]:
    """Every task announced, alone or in a batch, in the order announced."""
    tasks: list[dict[str, Any]] = []
    for message in await announcements(nats_client, names):
        if message.subject == names.tasks_created_batch:
            tasks += message.body["tasks"]
        else:
            tasks.append(message.body)
    return tasks


async def task_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """The discovery tasks the reconciler has recorded."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT id, parent_id, account_id, status, children_total"
                " FROM discovery_tasks ORDER BY account_id NULLS FIRST"
            )
        )
        return [dict(row._mapping) for row in result]


async def recorded_rows(
    engine: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_reconciler: Callable[..., Any],
) -> list[dict[str, Any]]:
    """Start a reconciler; the task rows once it has handled every message."""
    # The driven clock's tasks are months old to the reconciler: none times out.
    await start_reconciler(task_timeout_seconds=10 * 365 * 86400)
    js = nats_client.jetstream()

    async def handled_all() -> bool:
        stream = await js.stream_info(names.discovery_stream)
        info = await js.consumer_info(names.discovery_stream, names.reconciler_consumer)
        return (
            info.delivered.stream_seq == stream.state.last_seq
            and info.num_ack_pending == 0
        )

    await eventually(handled_all, within=30)
    return await task_rows(engine)


@dataclass
class Replica:
    app: SchedulerApp
    task: asyncio.Task[None]

    async def kill(self) -> None:
        self.task.cancel()
        await asyncio.wait_for(
            asyncio.gather(self.task, return_exceptions=True), timeout=30
        )


@pytest.fixture
async def start_replica(
    database_url: str, nats_url: str, names: BusNames, nats_client: NatsClient
) -> AsyncIterator[Callable[..., Any]]:
    """Start a scheduler replica in this process; all are stopped after the test."""
    replicas: list[Replica] = []

    async def start(clock: FakeClock, **overrides: Any) -> Replica:
        settings = SchedulerSettings(
            database_url=database_url,
            nats_url=nats_url,
            nats_namespace=names.namespace,
            _env_file=None,  # type: ignore[call-arg]
        )
        config = ScheduleConfig(**{**schedule_config(settings).__dict__, **overrides})
        sleeping = clock.sleepers()
        app = await build(settings, clock=clock, config=config)
        replica = Replica(app, asyncio.create_task(app.run()))
        replicas.append(replica)
        await eventually(lambda: clock.sleepers() >= sleeping + 2)
        return replica

    yield start

    for replica in replicas:
        await replica.kill()
