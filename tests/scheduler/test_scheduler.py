"""A scheduler replica against real NATS and PostgreSQL, with a driven clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from services.scheduler.adapters.nats import (
    STATE_KEY,
    JetStreamBus,
    KvCycleStore,
    scheduler_bucket,
)
from services.scheduler.planning import AccountRow, CycleKind, plan_cycle
from shared.bus import BusNames, ensure_poller_consumer
from shared.events import ScheduleState
from tests.scheduler.conftest import (
    FIRE,
    AccountSeed,
    FakeClock,
    account_ids,
    announcements,
    eventually,
    polls,
    recorded_rows,
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


async def settled_polls(nats_client: NatsClient, names: BusNames, expected: int) -> int:
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


async def test_a_cycle_only_logs_when_scheduled_polling_is_disabled(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(2)))
    clock = FakeClock()
    await start_replica(clock, enabled=False)

    with capture_logs() as logs:
        await clock.advance(10)
        await eventually(lambda: any(e["event"] == "cycle_disabled" for e in logs))
        await clock.advance(60)
        await asyncio.sleep(0.2)

    assert await count_polls(nats_client, names) == 0
    assert await tasks_created(nats_client, names) == []
    assert (await schedule_state(nats_client, names)).enabled is False


async def test_busy_accounts_are_skipped_with_the_reason_when_their_poll_is_running(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    ids = account_ids(3)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    running = await seed_task(db, ids[1], "running")
    clock = FakeClock()
    await start_replica(clock)

    await clock.advance(10)
    await clock.advance(30)
    await settled_polls(nats_client, names, 2)

    created = await tasks_created(nats_client, names)
    parent = next(task for task in created if task["kind"] == "cycle")
    children = {task["account_id"]: task for task in created if task["account_id"]}
    assert parent["children_total"] == 3 and parent["initiated_by"] is None
    assert children[ids[1]]["status"] == "skipped"
    assert children[ids[1]]["reason"] == f"previous poll {running} is still running"
    assert children[ids[0]]["status"] == children[ids[2]]["status"] == "pending"
    assert [p["account_id"] for p in await polls(nats_client, names)] == [
        ids[0],
        ids[2],
    ]


async def test_next_cycle_skips_accounts_whose_poll_is_not_recorded_yet(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    ids = account_ids(2)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    clock = FakeClock()
    await start_replica(clock, stagger_seconds=0)

    await clock.advance(10)
    await settled_polls(nats_client, names, 2)
    await clock.advance(3600)
    await eventually(lambda: _children_count(nats_client, names, 4))

    second = [
        task
        for task in await tasks_created(nats_client, names)
        if task["cycle_id"] == "scheduled-20260101T130000Z" and task["account_id"]
    ]
    assert [task["status"] for task in second] == ["skipped", "skipped"]
    assert all("not yet recorded" in task["reason"] for task in second)
    assert await count_polls(nats_client, names) == 2


class RecordedMeanwhile:
    """The database, with the reconciler recording `tasks` as pending at the
    worst moment: just after the first read of a busy check answers."""

    def __init__(self, inner: Any, engine: AsyncEngine, tasks: dict[str, str]) -> None:
        self._inner = inner
        self._engine = engine
        self._tasks = tasks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _then_record(self, answer: Any) -> Any:
        tasks, self._tasks = self._tasks, {}
        async with self._engine.begin() as connection:
            for task_id, account_id in tasks.items():
                await connection.execute(
                    text(
                        "INSERT INTO discovery_tasks (id, kind, account_id, status)"
                        " VALUES (:id, 'account_poll', :account, 'pending')"
                    ),
                    {"id": uuid.UUID(task_id), "account": account_id},
                )
        return answer

    async def unfinished_polls(self) -> dict[str, str]:
        return await self._then_record(await self._inner.unfinished_polls())

    async def recorded(self, task_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return await self._then_record(await self._inner.recorded(task_ids))


async def test_account_stays_busy_when_its_poll_is_recorded_during_the_check(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    [account] = account_ids(1)
    await seed_accounts(db, AccountSeed(account))
    clock = FakeClock()
    replica = await start_replica(clock, stagger_seconds=0)
    await clock.advance(10)
    await settled_polls(nats_client, names, 1)
    [first] = await polls(nats_client, names)
    scheduler = replica.app.scheduler
    scheduler._accounts = RecordedMeanwhile(
        scheduler._accounts, db, {first["task_id"]: account}
    )

    await clock.advance(3600)
    await eventually(lambda: _children_count(nats_client, names, 2))

    second = [
        task
        for task in await tasks_created(nats_client, names)
        if task["cycle_id"] == "scheduled-20260101T130000Z" and task["account_id"]
    ]
    assert [task["status"] for task in second] == ["skipped"]
    assert await count_polls(nats_client, names) == 1


async def _children_count(
    nats_client: NatsClient, names: BusNames, expected: int
) -> bool:
    created = await tasks_created(nats_client, names)
    return sum(1 for task in created if task["account_id"]) >= expected


async def test_the_overrun_is_logged_with_numbers_when_accounts_times_stagger_exceed_it(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(3)))
    clock = FakeClock()
    await start_replica(clock, cron="* * * * *")

    with capture_logs() as logs:
        await clock.advance(10)
        await eventually(lambda: _event(logs, "cycle_overruns_interval"))

    warning = _event(logs, "cycle_overruns_interval")
    assert warning["log_level"] == "warning"
    assert (warning["accounts"], warning["stagger_seconds"]) == (3, 30)
    assert (warning["needed_seconds"], warning["interval_seconds"]) == (90, 60)


def _event(logs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((entry for entry in logs if entry["event"] == name), None)


async def test_each_account_is_polled_once_when_two_replicas_run_the_cycle(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_replica,
    start_reconciler,
) -> None:
    ids = account_ids(5)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    clock = FakeClock()
    await start_replica(clock)
    await start_replica(clock)

    await clock.advance(10)
    for published in range(1, 5):
        await settled_polls(nats_client, names, published)
        await clock.advance(30)
    await settled_polls(nats_client, names, 5)

    sent = await polls(nats_client, names)
    announced = await announcements(nats_client, names)
    created = await tasks_created(nats_client, names)
    rows = await recorded_rows(db, nats_client, names, start_reconciler)
    assert sorted(poll["account_id"] for poll in sent) == ids
    assert len({poll["task_id"] for poll in sent}) == 5
    assert [message.subject for message in announced] == [
        names.tasks_created,
        names.tasks_created_batch,
    ]
    assert announced[1].msg_id == "tasks-created-scheduled-20260101T120000Z-0-5"
    assert len(created) == 6 and len({task["task_id"] for task in created}) == 6
    assert [row["account_id"] for row in rows] == [None, *ids]
    assert {row["id"] for row in rows} == {uuid.UUID(t["task_id"]) for t in created}


async def test_accounts_deleted_or_deactivated_mid_cycle_are_not_polled(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_replica,
    start_reconciler,
) -> None:
    ids = account_ids(3)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    clock = FakeClock()
    await start_replica(clock)
    await clock.advance(10)
    await settled_polls(nats_client, names, 1)

    async with db.begin() as connection:
        await connection.execute(
            text("UPDATE accounts SET is_active = false WHERE account_id = :a"),
            {"a": ids[1]},
        )
        await connection.execute(
            text("DELETE FROM accounts WHERE account_id = :a"), {"a": ids[2]}
        )
    with capture_logs() as logs:
        await clock.advance(30)
        await clock.advance(30)
        await eventually(
            lambda: asyncio.sleep(
                0, sum(e["event"] == "poll_withdrawn" for e in logs) == 2
            )
        )

    created = await tasks_created(nats_client, names)
    rows = await recorded_rows(db, nats_client, names, start_reconciler)
    status = {row["account_id"]: row["status"] for row in rows}
    assert [poll["account_id"] for poll in await polls(nats_client, names)] == ids[:1]
    assert status == {
        None: "pending",
        ids[0]: "pending",
        ids[1]: "skipped",
        ids[2]: "skipped",
    }
    reasons = {
        task["account_id"]: task["reason"]
        for task in created
        if task["status"] == "skipped"
    }
    assert reasons == {
        ids[1]: "no longer eligible when due: account is inactive",
        ids[2]: "no longer eligible when due: the account was deleted",
    }


async def test_a_restarted_replica_finishes_the_cycle_when_killed_in_the_middle(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_replica,
    start_reconciler,
) -> None:
    ids = account_ids(4)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    clock = FakeClock()
    first = await start_replica(clock)
    await clock.advance(10)
    await settled_polls(nats_client, names, 1)
    await clock.advance(30)
    await settled_polls(nats_client, names, 2)

    await first.kill()
    await clock.advance(15)
    await start_replica(clock)
    await clock.advance(15)
    after_restart = await settled_polls(nats_client, names, 3)
    await clock.advance(30)
    await settled_polls(nats_client, names, 4)

    sent = await polls(nats_client, names)
    state = await eventually(lambda: _finished_state(nats_client, names))
    created = await tasks_created(nats_client, names)
    rows = await recorded_rows(db, nats_client, names, start_reconciler)
    assert after_restart == 3
    assert [poll["account_id"] for poll in sent] == ids
    assert [
        (datetime.fromisoformat(poll["requested_at"]) - FIRE).total_seconds()
        for poll in sent
    ] == [0, 30, 60, 90]
    assert state.last_cycle.published == 4 and state.current_cycle is None
    assert [task["account_id"] for task in created] == [None, *ids]
    assert [(row["account_id"], row["status"]) for row in rows] == [
        (None, "pending"),
        *((account_id, "pending") for account_id in ids),
    ]


async def _finished_state(
    nats_client: NatsClient, names: BusNames
) -> ScheduleState | None:
    state = await schedule_state(nats_client, names)
    return state if state.last_cycle is not None else None


async def test_operators_see_the_cycle_in_progress_when_it_is_half_published(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(4)))
    await seed_task(db, account_ids(4)[3], "pending")
    clock = FakeClock()
    await start_replica(clock, max_concurrent=3)
    before = await schedule_state(nats_client, names)

    await clock.advance(10)
    await clock.advance(30)
    await settled_polls(nats_client, names, 2)
    state = await eventually(lambda: _published_state(nats_client, names, 2))

    consumer = await nats_client.jetstream().consumer_info(
        names.polls_stream, names.poller_consumer
    )
    assert before.next_run_at == FIRE and before.current_cycle is None
    progress = state.current_cycle
    assert (progress.published, progress.waiting, progress.skipped) == (2, 1, 1)
    assert progress.next_due_at == FIRE + timedelta(seconds=60)
    assert state.max_concurrent == 3 and consumer.config.max_ack_pending == 3
    assert state.next_run_at == FIRE + timedelta(hours=1)


async def _published_state(
    nats_client: NatsClient, names: BusNames, published: int
) -> ScheduleState | None:
    state = await schedule_state(nats_client, names)
    current = state.current_cycle
    return state if current and current.published == published else None


async def test_a_plan_left_by_a_dead_replica_is_carried_out_once_when_one_starts(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    """The dead replica had stored its plan and sent the first poll, nothing else."""
    ids = account_ids(3)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    accounts = [
        AccountRow(i, "instance_role", True, "Role", None, None, ("us-east-1",))
        for i in ids
    ]
    clock = FakeClock(FIRE)
    plan = plan_cycle("manual-dead", CycleKind.MANUAL, accounts, {}, FIRE, 0, "eve")
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, 2)
    await KvCycleStore(await scheduler_bucket(js, names)).create_plan(plan)
    await JetStreamBus(js, names).publish_polls(plan, plan.polls[:1], FIRE)

    await start_replica(clock, enabled=False)  # no scheduled cycle besides
    await settled_polls(nats_client, names, 3)

    sent = await polls(nats_client, names)
    assert [poll["account_id"] for poll in sent] == ids
    assert len(await tasks_created(nats_client, names)) == 4


async def test_a_fire_missed_minutes_ago_is_run_once_when_a_replica_starts(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    ids = account_ids(3)
    await seed_accounts(db, *(AccountSeed(i) for i in ids))
    clock = FakeClock(FIRE + timedelta(seconds=45))
    await start_replica(clock)
    caught_up = await settled_polls(nats_client, names, 2)

    await start_replica(clock)
    await clock.advance(15)
    await settled_polls(nats_client, names, 3)

    sent = await polls(nats_client, names)
    assert caught_up == 2
    assert [poll["account_id"] for poll in sent] == ids
    assert {poll["cycle_id"] for poll in sent} == {"scheduled-20260101T120000Z"}


async def test_children_are_announced_once_in_batches_when_a_restart_announces_again(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_replica,
    start_reconciler,
) -> None:
    """The dead replica had stored its plan and announced it, but not said so."""
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(450)))
    accounts = [
        AccountRow(i, "instance_role", True, "Role", None, None, ("us-east-1",))
        for i in account_ids(450)
    ]
    plan = plan_cycle("manual-big", CycleKind.MANUAL, accounts, {}, FIRE, 0, "eve")
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, 2)
    await KvCycleStore(await scheduler_bucket(js, names)).create_plan(plan)
    await JetStreamBus(js, names).announce(plan, FIRE)
    first_copy = await announcements(nats_client, names)

    await start_replica(FakeClock(FIRE), enabled=False)  # no scheduled cycle besides
    await settled_polls(nats_client, names, 450)

    announced = await announcements(nats_client, names)
    created = await tasks_created(nats_client, names)
    rows = await recorded_rows(db, nats_client, names, start_reconciler)
    assert announced == first_copy
    assert [message.msg_id for message in announced] == [
        f"task-created-{plan.parent_task_id}",
        "tasks-created-manual-big-0-200",
        "tasks-created-manual-big-200-200",
        "tasks-created-manual-big-400-50",
    ]
    assert [task["task_id"] for task in created[1:]] == [
        str(child.task_id) for child in plan.children
    ]
    assert len(rows) == 451 and rows[0]["children_total"] == 450
    assert {row["parent_id"] for row in rows[1:]} == {plan.parent_task_id}
