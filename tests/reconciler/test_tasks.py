"""Task records: child outcomes per region, parent counters, failures, timeouts."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.reconciler import discovery
from shared.events import (
    DiscoveryFailed,
    FailureKind,
    RegionSnapshot,
    TaskCreated,
    TaskKind,
    TasksCreated,
    TaskStarted,
    TaskStatus,
)
from tests.reconciler.factories import (
    REGION,
    A,
    B,
    add_account,
    at,
    discovered,
    eni,
    ids,
)

OTHER_REGION = "eu-central-1"
ACCOUNTS = [f"4444444444{n:02d}" for n in range(10)]
DENIED = f"assume_role_failed: denied ({REGION})"


def cycle(children: int) -> TaskCreated:
    return TaskCreated(
        task_id=uuid.uuid4(),
        kind=TaskKind.CYCLE,
        children_total=children,
        created_at=at(0),
    )


def child(
    parent: TaskCreated | None, account: str, regions: list[str], **fields: object
) -> TaskCreated:
    return TaskCreated(
        task_id=uuid.uuid4(),
        parent_task_id=parent.task_id if parent else None,
        kind=TaskKind.ACCOUNT_POLL,
        account_id=account,
        regions=regions,
        created_at=at(0),
        **fields,
    )


def failed(
    task: TaskCreated, region: str | None, kind: FailureKind, reason: str
) -> DiscoveryFailed:
    assert task.account_id is not None
    return DiscoveryFailed(
        task_id=task.task_id,
        account_id=task.account_id,
        region=region,
        regions=task.regions,
        kind=kind,
        reason=reason,
        discovery_started_at=at(10),
        failed_at=at(11),
    )


async def task_row(pool: asyncpg.Pool, task: TaskCreated) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM discovery_tasks WHERE id = $1", task.task_id
    )
    assert row is not None
    return row


async def apply(
    pool: asyncpg.Pool, task: TaskCreated, region: str, snapshot: RegionSnapshot
):  # type: ignore[no-untyped-def]
    assert task.account_id is not None
    event = discovered(task.account_id, snapshot, at(5), region, task.task_id)
    return await discovery.apply_discovered(pool, event, event.snapshot)


async def test_child_and_parent_succeed_when_every_region_is_applied(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A, (REGION, OTHER_REGION))
    parent = cycle(1)
    task = child(parent, A, [REGION, OTHER_REGION])
    await discovery.record_created(pool, parent)
    await discovery.record_created(pool, task)

    first = await apply(
        pool, task, REGION, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])
    )
    last = await apply(pool, task, OTHER_REGION, RegionSnapshot())

    row = await task_row(pool, task)
    results = json.loads(row["region_results"])
    assert first.finished == []
    assert [(e.task_id, e.status) for e in last.finished] == [
        (task.task_id, TaskStatus.SUCCEEDED),
        (parent.task_id, TaskStatus.SUCCEEDED),
    ]
    assert row["status"] == "succeeded"
    assert results[REGION]["status"] == "applied"
    assert results[REGION]["added"]["enis"] == 1
    assert results[REGION]["added"]["eni_addresses"] == 1
    assert (await task_row(pool, parent))["children_succeeded"] == 1


async def test_nothing_is_removed_and_region_marked_stale_when_the_region_failed(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A, (REGION, OTHER_REGION))
    await apply(
        pool,
        child(None, A, [REGION]),
        REGION,
        RegionSnapshot(enis=[eni("eni-1", A, "s", "v")]),
    )
    task = child(None, A, [REGION, OTHER_REGION])
    await discovery.record_created(pool, task)

    await apply(pool, task, OTHER_REGION, RegionSnapshot())
    outcome = await discovery.record_failure(
        pool, failed(task, REGION, FailureKind.ACCESS_DENIED, "not authorized")
    )

    poll = await pool.fetchrow("SELECT * FROM region_polls WHERE region = $1", REGION)
    results = json.loads((await task_row(pool, task))["region_results"])
    assert await ids(pool, "enis", "eni_id") == {"eni-1"}
    assert [e.status for e in outcome.finished] == [TaskStatus.PARTIALLY_FAILED]
    assert results[REGION] == {
        "status": "failed",
        "kind": "access_denied",
        "error": "not authorized",
    }
    assert poll["consecutive_failures"] == 1
    assert poll["last_error"] == "not authorized"
    assert poll["stale_since"] == at(11)
    assert poll["last_success_at"] is not None


async def test_nothing_is_removed_and_failures_counted_when_assume_role_failed(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await apply(
        pool,
        child(None, A, [REGION]),
        REGION,
        RegionSnapshot(enis=[eni("eni-1", A, "s", "v")]),
    )
    last_success = await pool.fetchval("SELECT last_success_at FROM accounts")

    for _ in range(2):
        task = child(None, A, [REGION])
        await discovery.record_created(pool, task)
        outcome = await discovery.record_failure(
            pool, failed(task, None, FailureKind.ASSUME_ROLE_FAILED, "AccessDenied")
        )

    account = await pool.fetchrow("SELECT * FROM accounts")
    assert await ids(pool, "enis", "eni_id") == {"eni-1"}
    assert [e.status for e in outcome.finished] == [TaskStatus.FAILED]
    assert account["consecutive_failures"] == 2
    assert "AccessDenied" in account["last_error"]
    assert account["last_success_at"] == last_success
    assert account["stale_since"] is not None
    assert await pool.fetchval("SELECT consecutive_failures FROM region_polls") == 2


async def test_next_attempts_snapshot_replaces_a_failure_while_the_task_runs(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A, (REGION, OTHER_REGION))
    task = child(None, A, [REGION, OTHER_REGION])
    await discovery.record_created(pool, task)
    await discovery.record_failure(
        pool, failed(task, REGION, FailureKind.THROTTLED, "slow down")
    )

    # The poller died; the redelivered poll's second attempt got through.
    retried = await apply(
        pool, task, REGION, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])
    )
    late_failure = await discovery.record_failure(
        pool, failed(task, REGION, FailureKind.THROTTLED, "slow down again")
    )
    last = await apply(pool, task, OTHER_REGION, RegionSnapshot())

    row = await task_row(pool, task)
    poll = await pool.fetchrow("SELECT * FROM region_polls WHERE region = $1", REGION)
    assert retried.status == "applied"
    assert late_failure.status == "duplicate"
    assert [e.status for e in last.finished] == [TaskStatus.SUCCEEDED]
    assert json.loads(row["region_results"])[REGION]["status"] == "applied"
    assert row["error"] is None
    assert await ids(pool, "enis", "eni_id") == {"eni-1"}
    assert (poll["consecutive_failures"], poll["stale_since"]) == (0, None)


async def test_a_finished_tasks_outcome_stays_when_a_late_snapshot_comes(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    task = child(None, A, [REGION])
    await discovery.record_created(pool, task)
    await discovery.record_failure(
        pool, failed(task, REGION, FailureKind.THROTTLED, "slow down")
    )

    late = await apply(
        pool, task, REGION, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])
    )

    assert late.status == "duplicate"
    assert (await task_row(pool, task))["status"] == "failed"
    assert await ids(pool, "enis", "eni_id") == set()


async def test_error_names_each_cause_once_with_its_regions(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A, (REGION, OTHER_REGION))
    await add_account(pool, B, (REGION, OTHER_REGION, "us-east-1"))
    whole = child(None, A, [REGION, OTHER_REGION])
    regions = child(None, B, [REGION, OTHER_REGION, "us-east-1"])
    for task in (whole, regions):
        await discovery.record_created(pool, task)

    await discovery.record_failure(
        pool, failed(whole, None, FailureKind.ASSUME_ROLE_FAILED, "denied")
    )
    for region, kind, reason in [
        (REGION, FailureKind.ACCESS_DENIED, "no ec2:DescribeVpcs"),
        ("us-east-1", FailureKind.ACCESS_DENIED, "no ec2:DescribeVpcs"),
        (OTHER_REGION, FailureKind.TIMEOUT, "took 900 s"),
    ]:
        await discovery.record_failure(pool, failed(regions, region, kind, reason))

    errors = await pool.fetch(
        "SELECT account_id, last_error FROM accounts ORDER BY account_id"
    )
    assert (await task_row(pool, whole))["error"] == (
        f"assume_role_failed: denied ({OTHER_REGION}, {REGION})"
    )
    assert (await task_row(pool, regions))["error"] == (
        f"timeout: took 900 s ({OTHER_REGION}); "
        f"access_denied: no ec2:DescribeVpcs ({REGION}, us-east-1)"
    )
    assert [row["last_error"] for row in errors] == [
        (await task_row(pool, task))["error"] for task in (whole, regions)
    ]


async def test_child_finishes_when_announced_after_its_result(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    parent = cycle(1)
    task = child(parent, A, [REGION])

    early = await apply(
        pool, task, REGION, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])
    )
    announced = await discovery.record_created(pool, task)
    parent_announced = await discovery.record_created(pool, parent)

    assert early.status == "applied"
    assert early.finished == []
    assert [e.status for e in announced.finished] == [TaskStatus.SUCCEEDED]
    assert [e.task_id for e in parent_announced.finished] == [parent.task_id]
    assert (await task_row(pool, parent))["status"] == "succeeded"


async def test_failed_child_is_counted_in_parent_when_announced_after_its_failure(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    parent = cycle(1)
    task = child(parent, A, [REGION])
    await discovery.record_created(pool, parent)

    await discovery.record_failure(
        pool, failed(task, None, FailureKind.ASSUME_ROLE_FAILED, "x")
    )
    outcome = await discovery.record_created(pool, task)

    assert [e.status for e in outcome.finished] == [TaskStatus.FAILED]
    assert (await task_row(pool, parent))["children_failed"] == 1
    assert (await task_row(pool, task))["status"] == "failed"


async def test_both_children_are_counted_when_finishing_at_the_same_moment(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B, (OTHER_REGION,))
    for _ in range(5):
        parent = cycle(2)
        first, second = child(parent, A, [REGION]), child(parent, B, [OTHER_REGION])
        for event in (parent, first, second):
            await discovery.record_created(pool, event)

        await asyncio.gather(
            apply(pool, first, REGION, RegionSnapshot()),
            apply(pool, second, OTHER_REGION, RegionSnapshot()),
        )

        row = await task_row(pool, parent)
        assert (row["children_succeeded"], row["status"]) == (2, "succeeded")


async def test_nothing_changes_when_a_snapshot_is_redelivered(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    task = child(None, A, [REGION])
    await discovery.record_created(pool, task)
    snapshot = RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])

    await apply(pool, task, REGION, snapshot)
    again = await apply(pool, task, REGION, snapshot)

    results = json.loads((await task_row(pool, task))["region_results"])
    assert again.status == "duplicate"
    assert [e.status for e in again.finished] == [TaskStatus.SUCCEEDED]
    assert results[REGION]["added"]["enis"] == 1
    assert await pool.fetchval("SELECT consecutive_failures FROM accounts") == 0


async def test_failure_counts_once_when_redelivered(pool: asyncpg.Pool) -> None:
    await add_account(pool, A)
    task = child(None, A, [REGION])
    await discovery.record_created(pool, task)
    failure = failed(task, REGION, FailureKind.THROTTLED, "Throttling")

    await discovery.record_failure(pool, failure)
    await discovery.record_failure(pool, failure)

    assert await pool.fetchval("SELECT consecutive_failures FROM region_polls") == 1
    assert await pool.fetchval("SELECT consecutive_failures FROM accounts") == 1


async def test_parent_status_ignores_children_when_they_were_skipped(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    parent, all_skipped = cycle(2), cycle(1)
    await discovery.record_created(pool, parent)
    await discovery.record_created(pool, all_skipped)
    ran = child(parent, A, [REGION])
    await discovery.record_created(pool, ran)

    await discovery.record_created(
        pool, child(parent, B, [REGION], status=TaskStatus.SKIPPED, reason="busy")
    )
    await discovery.record_created(
        pool, child(all_skipped, B, [REGION], status=TaskStatus.SKIPPED, reason="busy")
    )
    await apply(pool, ran, REGION, RegionSnapshot())

    row = await task_row(pool, parent)
    assert (row["status"], row["children_skipped"], row["children_succeeded"]) == (
        "succeeded",
        1,
        1,
    )
    assert (await task_row(pool, all_skipped))["status"] == "skipped"


async def test_tasks_and_parent_fail_when_past_the_timeout(
    pool: asyncpg.Pool,
) -> None:
    parent = cycle(2)
    stuck = child(parent, A, [REGION])
    await discovery.record_created(pool, parent)
    await discovery.record_created(pool, stuck)
    await discovery.record_created(
        pool, child(parent, B, [REGION], status=TaskStatus.SKIPPED)
    )
    await pool.execute(
        "UPDATE discovery_tasks SET created_at = now() - $1::interval",
        timedelta(hours=2),
    )

    finished = await discovery.fail_expired_tasks(pool, 3600)

    row = await task_row(pool, parent)
    assert {(e.task_id, e.status) for e in finished} == {
        (stuck.task_id, TaskStatus.FAILED),
        (parent.task_id, TaskStatus.FAILED),
    }
    assert (await task_row(pool, stuck))["error"] == "timed out after 3600 s"
    assert (row["children_failed"], row["children_skipped"]) == (1, 1)


async def test_timeout_runs_from_a_childs_due_time_or_start_not_its_creation(
    pool: asyncpg.Pool,
) -> None:
    parent = cycle(3)
    waiting, running, due_long_ago = (
        child(parent, account, [REGION]) for account in ACCOUNTS[:3]
    )
    await discovery.record_created(pool, parent)
    for task in (waiting, running, due_long_ago):
        await discovery.record_created(pool, task)
    # Created three hours ago, all of them: due in 10 minutes (the stagger),
    # started 30 minutes ago, or due two hours ago and never started.
    for task, times in [
        (parent, ""),
        (waiting, ", not_before = now() + interval '10 minutes'"),
        (running, ", status = 'running', started_at = now() - interval '30 minutes'"),
        (due_long_ago, ", not_before = now() - interval '2 hours'"),
    ]:
        await pool.execute(
            "UPDATE discovery_tasks SET created_at = now() - interval '3 hours'"
            f"{times} WHERE id = $1",
            task.task_id,
        )

    finished = await discovery.fail_expired_tasks(pool, 3600)

    assert [e.task_id for e in finished] == [due_long_ago.task_id]
    assert [(await task_row(pool, t))["status"] for t in (waiting, running)] == [
        "pending",
        "running",
    ]
    assert (await task_row(pool, parent))["status"] == "pending"


async def test_a_start_from_a_clock_running_ahead_does_not_hold_off_the_timeout(
    pool: asyncpg.Pool,
) -> None:
    parent = cycle(1)
    task = child(parent, A, [REGION])
    await discovery.record_created(pool, parent)
    await discovery.record_created(pool, task)
    next_year = datetime.now(UTC) + timedelta(days=365)

    await discovery.record_started(
        pool, TaskStarted(task_id=task.task_id, account_id=A, started_at=next_year)
    )
    await pool.execute(
        "UPDATE discovery_tasks SET started_at = started_at - interval '2 hours',"
        " created_at = created_at - interval '2 hours'"
    )
    finished = await discovery.fail_expired_tasks(pool, 3600)

    assert {e.task_id for e in finished} == {task.task_id, parent.task_id}


async def test_a_poll_no_scheduler_announced_fails_after_the_grace(
    pool: asyncpg.Pool,
) -> None:
    stray, announced = child(None, A, [REGION]), child(None, B, [REGION])
    await discovery.record_created(pool, announced)
    for task, account in ((stray, A), (announced, B)):
        await discovery.record_started(
            pool,
            TaskStarted(task_id=task.task_id, account_id=account, started_at=at(0)),
        )
    await pool.execute(
        "UPDATE discovery_tasks SET created_at = now() - interval '11 minutes',"
        " started_at = now() - interval '11 minutes'"
    )

    finished = await discovery.fail_expired_tasks(pool, 3600)

    assert [e.task_id for e in finished] == [stray.task_id]
    assert (await task_row(pool, stray))["error"] == (
        "no scheduler announced this poll within 600 s"
    )
    assert (await task_row(pool, announced))["status"] == "running"


async def test_announced_times_far_ahead_do_not_hold_the_task_forever(
    pool: asyncpg.Pool,
) -> None:
    far = datetime(9999, 12, 30, tzinfo=UTC)
    task = child(None, A, [REGION], not_before=far)
    task = task.model_copy(update={"created_at": far})

    await discovery.record_created(pool, task)

    row = await task_row(pool, task)
    now = await pool.fetchval("SELECT now()")
    assert now - timedelta(minutes=1) < row["created_at"] <= now
    assert row["not_before"] == row["created_at"] + timedelta(days=7)


def batch_of(parent: TaskCreated, children: list[TaskCreated]) -> TasksCreated:
    return TasksCreated(
        cycle_id="manual-batch", parent_task_id=parent.task_id, first=0, tasks=children
    )


async def children_seen_before(
    pool: asyncpg.Pool, accounts: list[str]
) -> tuple[TaskCreated, list[TaskCreated]]:
    """A cycle of five children, each meeting another case before it is announced.

    The first one's snapshot came, the second one's poll started, the third
    one's whole poll failed; the fourth is skipped and the fifth saw nothing.
    """
    for account in accounts:
        await add_account(pool, account)
    parent = cycle(5)
    children = [child(parent, account, [REGION]) for account in accounts[:3]] + [
        child(parent, accounts[3], [REGION], status=TaskStatus.SKIPPED, reason="busy"),
        child(parent, accounts[4], [REGION]),
    ]
    await discovery.record_created(pool, parent)

    await apply(pool, children[0], REGION, RegionSnapshot())
    await discovery.record_started(
        pool,
        TaskStarted(
            task_id=children[1].task_id, account_id=accounts[1], started_at=at(1)
        ),
    )
    await discovery.record_failure(
        pool, failed(children[2], None, FailureKind.ASSUME_ROLE_FAILED, "denied")
    )
    return parent, children


async def cycle_state(
    pool: asyncpg.Pool, parent: TaskCreated, children: list[TaskCreated]
) -> dict[str, object]:
    """What a cycle's rows and its accounts say, in the order of its children."""
    parent_row = await pool.fetchrow(
        "SELECT status, announced, children_total, children_succeeded,"
        " children_failed, children_skipped FROM discovery_tasks WHERE id = $1",
        parent.task_id,
    )
    rows = [
        await pool.fetchrow(
            "SELECT status, announced, regions, reason, error,"
            " region_results -> $2 ->> 'status' AS region"
            " FROM discovery_tasks WHERE id = $1",
            task.task_id,
            REGION,
        )
        for task in children
    ]
    accounts = [
        await pool.fetchrow(
            "SELECT consecutive_failures, last_error, last_success_at IS NOT NULL"
            " AS succeeded, stale_since IS NOT NULL AS stale FROM accounts"
            " WHERE account_id = $1",
            task.account_id,
        )
        for task in children
    ]
    return {
        "parent": list(parent_row or ()),
        "children": [tuple(row) for row in rows],
        "accounts": [tuple(account) for account in accounts],
    }


async def test_a_batch_is_recorded_like_its_events_one_by_one_when_seen_before(
    pool: asyncpg.Pool,
) -> None:
    single_parent, singles = await children_seen_before(pool, ACCOUNTS[:5])
    parent, children = await children_seen_before(pool, ACCOUNTS[5:])

    one_by_one = [await discovery.record_created(pool, task) for task in singles]
    batch = await discovery.record_created_batch(pool, batch_of(parent, children))

    state = await cycle_state(pool, parent, children)
    assert [e.status for e in batch.finished] == [
        e.status for outcome in one_by_one for e in outcome.finished
    ]
    assert [e.task_id for e in batch.finished] == [
        children[0].task_id,
        children[3].task_id,
    ]
    assert state == await cycle_state(pool, single_parent, singles)
    assert state["parent"] == ["pending", True, 5, 1, 1, 1]
    assert state["children"] == [
        ("succeeded", True, [REGION], None, None, "applied"),
        ("running", True, [REGION], None, None, None),
        ("failed", True, [REGION], None, DENIED, "failed"),
        ("skipped", True, [REGION], "busy", "busy", None),
        ("pending", True, [REGION], None, None, None),
    ]
    assert state["accounts"][:3] == [
        (0, None, True, False),
        (0, None, False, False),
        (1, DENIED, False, True),
    ]


async def test_nothing_changes_when_a_batch_is_redelivered(
    pool: asyncpg.Pool,
) -> None:
    parent, children = await children_seen_before(pool, ACCOUNTS[:5])
    batch = batch_of(parent, children)
    await discovery.record_created_batch(pool, batch)
    tasks_before = await pool.fetch("SELECT * FROM discovery_tasks ORDER BY id")
    accounts_before = await pool.fetch("SELECT * FROM accounts ORDER BY account_id")

    again = await discovery.record_created_batch(pool, batch)

    assert again.finished == []
    assert await pool.fetch("SELECT * FROM discovery_tasks ORDER BY id") == tasks_before
    assert (
        await pool.fetch("SELECT * FROM accounts ORDER BY account_id")
        == accounts_before
    )


async def test_the_parent_finishes_when_announced_after_a_batch_of_skipped_children(
    pool: asyncpg.Pool,
) -> None:
    parent = cycle(3)
    children = [
        child(parent, account, [REGION], status=TaskStatus.SKIPPED, reason="busy")
        for account in ACCOUNTS[:3]
    ]

    batch = await discovery.record_created_batch(pool, batch_of(parent, children))
    announced = await discovery.record_created(pool, parent)

    row = await task_row(pool, parent)
    assert [(e.task_id, e.status) for e in batch.finished] == [
        (task.task_id, TaskStatus.SKIPPED) for task in children
    ]
    assert [(e.task_id, e.status) for e in announced.finished] == [
        (parent.task_id, TaskStatus.SKIPPED)
    ]
    assert (row["children_skipped"], row["children_total"]) == (3, 3)


async def test_the_parent_finishes_in_the_batch_when_it_completes_the_count(
    pool: asyncpg.Pool,
) -> None:
    parent, children = await children_seen_before(pool, ACCOUNTS[:5])
    await apply(pool, children[1], REGION, RegionSnapshot())
    await apply(pool, children[4], REGION, RegionSnapshot())

    batch = await discovery.record_created_batch(pool, batch_of(parent, children))

    row = await task_row(pool, parent)
    assert [e.task_id for e in batch.finished] == [
        children[0].task_id,
        children[1].task_id,
        children[3].task_id,
        children[4].task_id,
        parent.task_id,
    ]
    assert (row["status"], row["children_succeeded"]) == ("partially_failed", 3)
    assert (row["children_failed"], row["children_skipped"]) == (1, 1)
