"""What the reconciler does with each discovery event; no broker in here.

Every function runs one transaction and returns what to publish after the
commit. Redelivered events change nothing: a region outcome is recorded once
per task (a failure may give way to a later attempt's snapshot while the task
is unfinished), and a snapshot not newer than the last applied one for its
account and region is not applied again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.reconciler import tasks
from services.reconciler.apply import ApplyResult, apply_snapshot, lock_region
from services.reconciler.rows import stage
from shared.events import (
    DiscoveryFailed,
    RegionSnapshot,
    ResourcesDiscovered,
    TaskCreated,
    TaskFinished,
    TasksCreated,
    TaskStarted,
)

CLOCK_AHEAD_LIMIT = timedelta(minutes=5)
"""How far a snapshot's discovery start may lie ahead of the database's clock.

Snapshots are ordered by that time; one from a poller whose clock runs ahead
would otherwise supersede every true snapshot of its region until real time
caught up with it.
"""


@dataclass
class Outcome:
    """What became of one event, for the log line and the publications."""

    status: str
    reason: str | None = None
    result: ApplyResult | None = None
    finished: list[TaskFinished] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"outcome": self.status}
        if self.reason:
            fields["reason"] = self.reason
        if self.result is not None:
            fields.update(
                added=self.result.total("added"),
                updated=self.result.total("updated"),
                removed=self.result.total("removed"),
                changes={
                    f"{kind}.{resource}": count
                    for kind, counts in self.result.as_dict().items()
                    for resource, count in counts.items()
                    if count
                },
            )
        return fields


async def _account_regions(
    connection: asyncpg.Connection, account_id: str
) -> list[str] | None:
    regions = await connection.fetchval(
        # KEY SHARE: a deletion waits for us; the health update of a poll does not.
        "SELECT default_regions FROM accounts WHERE account_id = $1 FOR KEY SHARE",
        account_id,
    )
    return None if regions is None else list(regions)


async def _lock_poll(
    connection: asyncpg.Connection, account_id: str, region: str
) -> tuple[datetime | None, datetime]:
    """Lock the account's region row: its last applied discovery start, and now.

    Now is the database's clock, the one every service's times are compared on.
    """
    await connection.execute(
        "INSERT INTO region_polls (account_id, region) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING",
        account_id,
        region,
    )
    row = await connection.fetchrow(
        "SELECT last_discovery_started_at, now() AS now FROM region_polls"
        " WHERE account_id = $1 AND region = $2 FOR UPDATE",
        account_id,
        region,
    )
    assert row is not None
    return row["last_discovery_started_at"], row["now"]


async def apply_discovered(
    pool: asyncpg.Pool,
    event: ResourcesDiscovered,
    snapshot: RegionSnapshot | None,
    load_error: str | None = None,
) -> Outcome:
    """Apply a region snapshot (or record why it could not be), in one transaction.

    `snapshot` is None when the stored snapshot could not be loaded; the region
    then fails with `load_error`, unless this task already has its outcome (the
    object is deleted after a commit whose acknowledgement was lost).
    """
    async with pool.acquire() as connection, connection.transaction():
        await lock_region(connection, event.region)
        await tasks.ensure_child(connection, event.task_id, event.account_id)
        child = await tasks.lock_child(connection, event.task_id)
        if not _may_decide(child, event.region, snapshot):
            return await _duplicate(connection, child)

        outcome = await _decide_and_apply(connection, event, snapshot, load_error)
        await tasks.record_region(
            connection, event.task_id, event.region, _region_result(outcome)
        )
        outcome.finished = await tasks.settle_child(connection, event.task_id)
    return outcome


def _may_decide(
    child: tasks.ChildRow, region: str, snapshot: RegionSnapshot | None
) -> bool:
    """Whether this result may give the task's region its outcome.

    A region without an outcome takes the first. While the task is unfinished,
    a complete snapshot also replaces a failure: the poll was redelivered (its
    poller died) and the next attempt got through where the first did not.
    """
    previous = child.region_results.get(region)
    if previous is None:
        return True
    return (
        previous.get("status") == "failed"
        and snapshot is not None
        and child.status in tasks.UNFINISHED
    )


async def _decide_and_apply(
    connection: asyncpg.Connection,
    event: ResourcesDiscovered,
    snapshot: RegionSnapshot | None,
    load_error: str | None,
) -> Outcome:
    if snapshot is None:
        return Outcome("failed", load_error or "snapshot unavailable")
    regions = await _account_regions(connection, event.account_id)
    if regions is None:
        return Outcome("discarded", "the account is not in the inventory")
    if event.region not in regions:
        return Outcome("discarded", "the region is not one of the account's")
    last_started, now = await _lock_poll(connection, event.account_id, event.region)
    ahead = event.discovery_started_at - now
    if ahead > CLOCK_AHEAD_LIMIT:
        return Outcome(
            "failed",
            f"the snapshot says its discovery started {ahead} after this moment"
            " by the database's clock; check the clock of the poller's host",
        )
    if last_started is not None and last_started - now > CLOCK_AHEAD_LIMIT:
        last_started = None  # stored before such times were refused: worth nothing
    if last_started is not None and event.discovery_started_at < last_started:
        return Outcome("superseded", "a newer snapshot is already applied")
    if last_started is not None and event.discovery_started_at == last_started:
        return Outcome("superseded", "this snapshot is already applied")

    result = await apply_snapshot(
        connection, event.account_id, event.region, stage(snapshot)
    )
    # The poller's end time, kept between its start and now: readers show it
    # as the resources' last-seen time.
    finished = min(max(event.discovery_finished_at, event.discovery_started_at), now)
    await connection.execute(
        "UPDATE region_polls SET last_discovery_started_at = $3,"
        " last_applied_at = $4, last_polled_at = $4, last_success_at = $4,"
        " last_task_id = $5, consecutive_failures = 0, stale_since = NULL"
        " WHERE account_id = $1 AND region = $2",
        event.account_id,
        event.region,
        event.discovery_started_at,
        finished,
        event.task_id,
    )
    return Outcome("applied", result=result)


async def _duplicate(connection: asyncpg.Connection, child: tasks.ChildRow) -> Outcome:
    """A redelivered event: change nothing, but republish what may have been lost.

    The first delivery may have committed and died before publishing; the
    publications carry a message id, so JetStream drops a second copy.
    """
    finished = await tasks.final_events(connection, child.id, child.parent_id)
    return Outcome(
        "duplicate", "this task's region already has its outcome", finished=finished
    )


def _region_result(outcome: Outcome) -> dict[str, Any]:
    result: dict[str, Any] = {"status": outcome.status}
    if outcome.result is not None:
        result.update(outcome.result.as_dict())
    if outcome.reason is not None:
        key = "error" if outcome.status == "failed" else "reason"
        result[key] = outcome.reason
    return result


async def record_failure(pool: asyncpg.Pool, event: DiscoveryFailed) -> Outcome:
    """A region, or the whole poll, failed: record it and touch no resource.

    The account's regions concerned count one more failure in a row and are
    marked stale, unless a newer snapshot of theirs is already applied.
    """
    async with pool.acquire() as connection, connection.transaction():
        await tasks.ensure_child(connection, event.task_id, event.account_id)
        child = await tasks.lock_child(connection, event.task_id)
        if event.region is not None:
            regions = [event.region]
        else:
            regions = event.regions or child.regions
        pending = sorted(set(regions) - set(child.region_results))
        finished_before = child.status not in tasks.UNFINISHED
        if not pending and (event.region is not None or finished_before):
            return await _duplicate(connection, child)

        known = await _account_regions(connection, event.account_id) is not None
        for region in pending:
            if known:
                await _count_region_failure(connection, event, region)
            await tasks.record_region(
                connection,
                event.task_id,
                region,
                {"status": "failed", "kind": event.kind.value, "error": event.reason},
            )
        whole_poll = event.region is None
        if whole_poll:
            await connection.execute(
                "UPDATE discovery_tasks SET error = $2 WHERE id = $1",
                event.task_id,
                f"{event.kind.value}: {event.reason}",
            )
        finished = await tasks.settle_child(
            connection, event.task_id, poll_failed=whole_poll
        )
    return Outcome("failed", event.reason, finished=finished)


async def _count_region_failure(
    connection: asyncpg.Connection, event: DiscoveryFailed, region: str
) -> None:
    await connection.execute(
        "INSERT INTO region_polls (account_id, region) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING",
        event.account_id,
        region,
    )
    await connection.execute(
        "UPDATE region_polls SET consecutive_failures = consecutive_failures + 1,"
        " last_polled_at = greatest(last_polled_at, least($4, now())),"
        " last_error = $5, last_error_kind = $6,"
        " stale_since = coalesce(stale_since, least($4, now())),"
        " last_task_id = $7 WHERE account_id = $1 AND region = $2"
        " AND (last_discovery_started_at IS NULL OR last_discovery_started_at < $3)",
        event.account_id,
        region,
        event.discovery_started_at,
        event.failed_at,
        event.reason,
        event.kind.value,
        event.task_id,
    )


async def record_created(pool: asyncpg.Pool, event: TaskCreated) -> Outcome:
    async with pool.acquire() as connection, connection.transaction():
        finished = await tasks.record_created(connection, event)
    return Outcome("recorded", finished=finished)


async def record_created_batch(pool: asyncpg.Pool, batch: TasksCreated) -> Outcome:
    """Record a batch of children in one transaction, as if each came on its own."""
    async with pool.acquire() as connection, connection.transaction():
        finished = await tasks.record_children(
            connection, batch.parent_task_id, batch.tasks
        )
    return Outcome("recorded", finished=finished)


async def record_started(pool: asyncpg.Pool, event: TaskStarted) -> Outcome:
    async with pool.acquire() as connection, connection.transaction():
        await tasks.record_started(connection, event)
    return Outcome("recorded")


async def fail_expired_tasks(
    pool: asyncpg.Pool, timeout_seconds: float
) -> list[TaskFinished]:
    async with pool.acquire() as connection, connection.transaction():
        return await tasks.fail_expired(connection, timeout_seconds)
