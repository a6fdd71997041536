"""Discovery task records: child outcomes, parent counters, account health.

Events may come in any order (a redelivered `tasks.created` after the results
of its task), so a task row is created on first sight (`announced = false`)
and completed when its announcement arrives. A child finishes once every
region it polls has an outcome (or its whole poll failed); a finished child is
counted into its parent exactly once, by a single `SET x = x + 1` statement,
when both its final status and its parent are known. Lock order, everywhere:
region locks, then the child row, then the parent row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.events import TaskCreated, TaskFinished, TaskKind, TaskStarted, TaskStatus

UNFINISHED = ("pending", "running")

REGION_OK = frozenset({"applied", "superseded", "discarded"})
"""Region outcomes that count as success for the child (failed is the other)."""

PARENT_COUNTER = {
    TaskStatus.SUCCEEDED: "children_succeeded",
    TaskStatus.PARTIALLY_FAILED: "children_partially_failed",
    TaskStatus.FAILED: "children_failed",
    TaskStatus.CANCELLED: "children_failed",
    TaskStatus.SKIPPED: "children_skipped",
    TaskStatus.SUPERSEDED: "children_succeeded",
}


@dataclass(frozen=True)
class ChildRow:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    account_id: str | None
    status: str
    announced: bool
    regions: list[str]
    region_results: dict[str, Any]
    error: str | None


def finished_event(row: asyncpg.Record) -> TaskFinished:
    return TaskFinished(
        task_id=row["id"],
        parent_task_id=row["parent_id"],
        account_id=row["account_id"],
        status=TaskStatus(row["status"]),
        finished_at=row["finished_at"],
        error=row["error"],
    )


_FINISHED_COLUMNS = "id, parent_id, account_id, status, finished_at, error"


async def ensure_child(
    connection: asyncpg.Connection, task_id: uuid.UUID, account_id: str
) -> None:
    """Create the row of a child seen before its announcement."""
    await connection.execute(
        "INSERT INTO discovery_tasks (id, kind, account_id, status, announced,"
        " started_at) VALUES ($1, 'account_poll', $2, 'running', false, now())"
        " ON CONFLICT (id) DO NOTHING",
        task_id,
        account_id,
    )


async def _ensure_parent(connection: asyncpg.Connection, parent_id: uuid.UUID) -> None:
    await connection.execute(
        "INSERT INTO discovery_tasks (id, kind, announced) VALUES ($1, 'cycle', false)"
        " ON CONFLICT (id) DO NOTHING",
        parent_id,
    )


async def lock_child(connection: asyncpg.Connection, task_id: uuid.UUID) -> ChildRow:
    row = await connection.fetchrow(
        "SELECT id, parent_id, account_id, status, announced, regions,"
        " region_results, error FROM discovery_tasks WHERE id = $1 FOR UPDATE",
        task_id,
    )
    assert row is not None, "ensure_child first"
    return ChildRow(
        id=row["id"],
        parent_id=row["parent_id"],
        account_id=row["account_id"],
        status=row["status"],
        announced=row["announced"],
        regions=list(row["regions"]),
        region_results=json.loads(row["region_results"]),
        error=row["error"],
    )


async def record_region(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    region: str,
    outcome: dict[str, Any],
) -> None:
    """Record a region's outcome once; a later one for the same region is ignored."""
    await connection.execute(
        "UPDATE discovery_tasks SET updated_at = now(),"
        " region_results = region_results || jsonb_build_object($2::text, $3::jsonb)"
        " WHERE id = $1 AND NOT region_results ? $2",
        task_id,
        region,
        json.dumps(outcome),
    )


async def record_created(
    connection: asyncpg.Connection, event: TaskCreated
) -> list[TaskFinished]:
    """Record a task's announcement, merging with a row created earlier."""
    if event.parent_task_id is not None:
        await _ensure_parent(connection, event.parent_task_id)
    before = await connection.fetchrow(
        "SELECT status, parent_id FROM discovery_tasks WHERE id = $1 FOR UPDATE",
        event.task_id,
    )
    await connection.execute(
        "INSERT INTO discovery_tasks (id, parent_id, kind, cycle_id, account_id,"
        " regions, status, reason, initiated_by, children_total, not_before,"
        " created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10,"
        " $11) ON CONFLICT (id) DO UPDATE SET parent_id = EXCLUDED.parent_id,"
        " kind = EXCLUDED.kind, cycle_id = EXCLUDED.cycle_id,"
        " account_id = EXCLUDED.account_id, regions = EXCLUDED.regions,"
        " reason = EXCLUDED.reason, initiated_by = EXCLUDED.initiated_by,"
        " children_total = EXCLUDED.children_total,"
        " not_before = EXCLUDED.not_before, created_at = EXCLUDED.created_at,"
        " announced = true, updated_at = now()",
        event.task_id,
        event.parent_task_id,
        event.kind.value,
        event.cycle_id,
        event.account_id,
        event.regions,
        event.reason,
        event.initiated_by,
        event.children_total,
        event.not_before,
        event.created_at,
    )
    finished: list[TaskFinished] = []
    if event.kind is TaskKind.CYCLE:
        finished += await settle_parent(connection, event.task_id)
        return finished
    if event.status is TaskStatus.SKIPPED:
        finished += await _finish_child(
            connection, event.task_id, TaskStatus.SKIPPED, event.reason
        )
        return finished
    was_final = before is not None and before["status"] not in UNFINISHED
    if was_final and before is not None and before["parent_id"] is None:
        # Finished before its announcement told us its parent: count it now.
        if event.parent_task_id is not None:
            finished += await _count_in_parent(
                connection, event.parent_task_id, TaskStatus(before["status"])
            )
        return finished
    finished += await settle_child(connection, event.task_id)
    return finished


async def record_started(connection: asyncpg.Connection, event: TaskStarted) -> None:
    """A poll began: the child, and its parent, are running."""
    await ensure_child(connection, event.task_id, event.account_id)
    parent_id = await connection.fetchval(
        "UPDATE discovery_tasks SET status = CASE WHEN status = 'pending'"
        " THEN 'running' ELSE status END, started_at = coalesce(started_at, $2),"
        " attempts = greatest(attempts, $3), updated_at = now() WHERE id = $1"
        " RETURNING parent_id",
        event.task_id,
        event.started_at,
        event.attempt,
    )
    if parent_id is not None:
        await connection.execute(
            "UPDATE discovery_tasks SET status = 'running', updated_at = now(),"
            " started_at = coalesce(started_at, $2)"
            " WHERE id = $1 AND status = 'pending'",
            parent_id,
            event.started_at,
        )


def child_status(child: ChildRow, poll_failed: bool) -> TaskStatus | None:
    """The child's final status, or None while a region still has no outcome."""
    if not poll_failed and not child.announced:
        return None
    regions = child.regions or list(child.region_results)
    outcomes = [child.region_results.get(region) for region in regions]
    if not poll_failed and (not outcomes or any(o is None for o in outcomes)):
        return None
    statuses = [outcome["status"] for outcome in outcomes if outcome is not None]
    failed = sum(1 for status in statuses if status not in REGION_OK)
    if failed == 0 and statuses:
        return TaskStatus.SUCCEEDED
    if failed == len(statuses):
        return TaskStatus.FAILED
    return TaskStatus.PARTIALLY_FAILED


def _error_summary(child: ChildRow) -> str | None:
    failures = [
        f"{region}: {outcome.get('kind') or 'failed'}: {outcome.get('error')}"
        for region, outcome in sorted(child.region_results.items())
        if outcome.get("status") not in REGION_OK
    ]
    if child.error:
        failures.insert(0, child.error)
    return "; ".join(failures)[:4000] or None


async def settle_child(
    connection: asyncpg.Connection, task_id: uuid.UUID, poll_failed: bool = False
) -> list[TaskFinished]:
    """Finish the child when it has every outcome it waits for."""
    child = await lock_child(connection, task_id)
    if child.status not in UNFINISHED:
        return []
    status = child_status(child, poll_failed)
    if status is None:
        return []
    return await _finish_child(connection, task_id, status, _error_summary(child))


async def _finish_child(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    status: TaskStatus,
    error: str | None,
) -> list[TaskFinished]:
    row = await connection.fetchrow(
        "UPDATE discovery_tasks SET status = $2, error = coalesce($3, error),"
        " finished_at = now(), updated_at = now()"
        f" WHERE id = $1 AND status IN {UNFINISHED} RETURNING {_FINISHED_COLUMNS}",
        task_id,
        status.value,
        error,
    )
    if row is None:
        return []
    finished = [finished_event(row)]
    if row["account_id"] is not None and status is not TaskStatus.SKIPPED:
        await _record_account_poll(connection, row["account_id"], status, error)
    if row["parent_id"] is not None:
        finished += await _count_in_parent(connection, row["parent_id"], status)
    return finished


async def _record_account_poll(
    connection: asyncpg.Connection,
    account_id: str,
    status: TaskStatus,
    error: str | None,
) -> None:
    if status is TaskStatus.SUCCEEDED:
        await connection.execute(
            "UPDATE accounts SET last_polled_at = now(), last_success_at = now(),"
            " consecutive_failures = 0, stale_since = NULL WHERE account_id = $1",
            account_id,
        )
        return
    await connection.execute(
        "UPDATE accounts SET last_polled_at = now(),"
        " consecutive_failures = consecutive_failures + 1, last_error = $2,"
        " stale_since = coalesce(stale_since, now()) WHERE account_id = $1",
        account_id,
        error,
    )


async def _count_in_parent(
    connection: asyncpg.Connection, parent_id: uuid.UUID, status: TaskStatus
) -> list[TaskFinished]:
    counter = PARENT_COUNTER[status]
    await connection.execute(
        f"UPDATE discovery_tasks SET {counter} = {counter} + 1, updated_at = now()"
        " WHERE id = $1",
        parent_id,
    )
    return await settle_parent(connection, parent_id)


async def settle_parent(
    connection: asyncpg.Connection, parent_id: uuid.UUID
) -> list[TaskFinished]:
    """Finish the parent once all its children are counted.

    Skipped children do not vote: the parent succeeded if every child that ran
    succeeded, failed if every one failed, and is skipped only when all were.
    """
    row = await connection.fetchrow(
        "UPDATE discovery_tasks SET status = CASE"
        " WHEN children_total = 0 THEN 'succeeded'"
        " WHEN children_skipped = children_total THEN 'skipped'"
        " WHEN children_succeeded + children_skipped = children_total"
        " THEN 'succeeded'"
        " WHEN children_failed + children_skipped = children_total THEN 'failed'"
        " ELSE 'partially_failed' END, finished_at = now(), updated_at = now()"
        f" WHERE id = $1 AND announced AND status IN {UNFINISHED}"
        " AND children_succeeded + children_partially_failed + children_failed"
        f" + children_skipped >= children_total RETURNING {_FINISHED_COLUMNS}",
        parent_id,
    )
    return [] if row is None else [finished_event(row)]


async def final_events(
    connection: asyncpg.Connection, task_id: uuid.UUID, parent_id: uuid.UUID | None
) -> list[TaskFinished]:
    """The `tasks.finished` events of a task and its parent, if they are final."""
    rows = await connection.fetch(
        f"SELECT {_FINISHED_COLUMNS} FROM discovery_tasks"
        f" WHERE id = ANY($1::uuid[]) AND status NOT IN {UNFINISHED}"
        " ORDER BY parent_id NULLS LAST",
        [task_id] if parent_id is None else [task_id, parent_id],
    )
    return [finished_event(row) for row in rows]


async def fail_expired(
    connection: asyncpg.Connection, timeout_seconds: float
) -> list[TaskFinished]:
    """Fail every task older than the timeout, children first, and update parents."""
    reason = f"timed out after {timeout_seconds:g} s"
    children = await connection.fetch(
        "UPDATE discovery_tasks SET status = 'failed', error = $2,"
        " finished_at = now(), updated_at = now()"
        f" WHERE kind = 'account_poll' AND status IN {UNFINISHED}"
        " AND created_at < now() - make_interval(secs => $1)"
        f" RETURNING {_FINISHED_COLUMNS}",
        timeout_seconds,
        reason,
    )
    finished = [finished_event(row) for row in children]
    for row in children:
        if row["account_id"] is not None:
            await _record_account_poll(
                connection, row["account_id"], TaskStatus.FAILED, reason
            )
    failed_per_parent: dict[uuid.UUID, int] = {}
    for row in children:
        if row["parent_id"] is not None:
            failed_per_parent[row["parent_id"]] = (
                failed_per_parent.get(row["parent_id"], 0) + 1
            )
    for parent_id in sorted(failed_per_parent):
        await connection.execute(
            "UPDATE discovery_tasks SET children_failed = children_failed + $2,"
            " updated_at = now() WHERE id = $1",
            parent_id,
            failed_per_parent[parent_id],
        )
        finished += await settle_parent(connection, parent_id)
    parents = await connection.fetch(
        "UPDATE discovery_tasks SET status = 'failed', error = $2,"
        " finished_at = now(), updated_at = now()"
        f" WHERE kind = 'cycle' AND status IN {UNFINISHED}"
        " AND created_at < now() - make_interval(secs => $1)"
        f" RETURNING {_FINISHED_COLUMNS}",
        timeout_seconds,
        reason,
    )
    finished += [finished_event(row) for row in parents]
    return finished
