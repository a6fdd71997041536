"""Discovery task records: announcements, child outcomes, parent counters, health.

Events may come in any order (a redelivered `tasks.created` after the results
of its task), so a task row is created on first sight (`announced = false`)
and completed when its announcement arrives, alone or in a batch: a batch is
recorded with set-based statements, exactly as its children one by one. A
child finishes once every region it polls has an outcome (or its whole poll
failed); a finished child is counted into its parent exactly once, by one
`SET x = x + n` statement, when both its final status and its parent are
known. Lock order, everywhere: region locks, then the child rows (in id order
when there are several), then the accounts, then the parent row.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from pydantic import TypeAdapter

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


_CHILD_COLUMNS = (
    "id, parent_id, account_id, status, announced, regions, region_results, error"
)


def _child_row(row: asyncpg.Record) -> ChildRow:
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


async def lock_child(connection: asyncpg.Connection, task_id: uuid.UUID) -> ChildRow:
    row = await connection.fetchrow(
        f"SELECT {_CHILD_COLUMNS} FROM discovery_tasks WHERE id = $1 FOR UPDATE",
        task_id,
    )
    assert row is not None, "ensure_child first"
    return _child_row(row)


async def record_region(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    region: str,
    outcome: dict[str, Any],
) -> None:
    """Record a region's outcome, unless it has one already other than failed.

    Callers decide when a failure may be replaced (see `discovery`); an outcome
    that is not a failure is final.
    """
    await connection.execute(
        "UPDATE discovery_tasks SET updated_at = now(),"
        " region_results = region_results || jsonb_build_object($2::text, $3::jsonb)"
        " WHERE id = $1 AND (NOT region_results ? $2"
        " OR region_results -> $2 ->> 'status' = 'failed')",
        task_id,
        region,
        json.dumps(outcome),
    )


_ANNOUNCEMENTS = TypeAdapter(list[TaskCreated])

_ANNOUNCED = (
    "(SELECT task_id, parent_task_id, kind, cycle_id, account_id, regions, reason,"
    " initiated_by, children_total,"
    " CASE WHEN not_before > now() + interval '7 days'"
    " THEN now() + interval '7 days' ELSE not_before END AS not_before,"
    " CASE WHEN created_at > now() + interval '5 minutes' THEN now()"
    " ELSE created_at END AS created_at"
    " FROM jsonb_to_recordset($1::jsonb) AS a(task_id uuid, parent_task_id uuid,"
    " kind varchar, cycle_id varchar, account_id varchar, regions varchar[],"
    " reason text, initiated_by varchar, children_total integer,"
    " not_before timestamptz, created_at timestamptz)) AS t"
)
"""The announcements, as rows typed like the columns they are compared with.

Their times are the scheduler's clock. One far ahead would keep the task
waiting, and its account busy, until then: a creation more than 5 minutes
ahead counts as now, and no poll is due more than 7 days ahead (the longest
stagger of a cycle of 10,000 accounts at 30 s is under 4 days)."""


async def _store_announcements(
    connection: asyncpg.Connection, events: Sequence[TaskCreated]
) -> dict[uuid.UUID, ChildRow]:
    """Write what `events` announce; return the rows that existed, as they were.

    Missing rows are inserted first, which waits for anyone inserting the same
    task at that moment; every other row is then locked (in id order) and
    read before it is completed, so what it held before the announcement is
    known exactly. A row already announced with the same fields is not
    written again.
    """
    announced = _ANNOUNCEMENTS.dump_json(list(events)).decode()
    inserted = await connection.fetch(
        "INSERT INTO discovery_tasks (id, parent_id, kind, cycle_id, account_id,"
        " regions, reason, initiated_by, children_total, not_before, created_at)"
        " SELECT task_id, parent_task_id, kind, cycle_id, account_id, regions,"
        " reason, initiated_by, children_total, not_before, created_at"
        f" FROM {_ANNOUNCED} ORDER BY task_id ON CONFLICT (id) DO NOTHING"
        " RETURNING id",
        announced,
    )
    new = {row["id"] for row in inserted}
    existing = [event.task_id for event in events if event.task_id not in new]
    if not existing:
        return {}

    before = await connection.fetch(
        f"SELECT {_CHILD_COLUMNS} FROM discovery_tasks"
        " WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        existing,
    )
    await connection.execute(
        "UPDATE discovery_tasks d SET parent_id = t.parent_task_id, kind = t.kind,"
        " cycle_id = t.cycle_id, account_id = t.account_id, regions = t.regions,"
        " reason = t.reason, initiated_by = t.initiated_by,"
        " children_total = t.children_total, not_before = t.not_before,"
        " created_at = t.created_at, announced = true, updated_at = now()"
        f" FROM {_ANNOUNCED} WHERE d.id = t.task_id AND d.id = ANY($2::uuid[])"
        " AND (NOT d.announced OR (d.parent_id, d.kind, d.cycle_id, d.account_id,"
        " d.regions, d.reason, d.initiated_by, d.children_total, d.not_before,"
        " d.created_at) IS DISTINCT FROM (t.parent_task_id, t.kind, t.cycle_id,"
        " t.account_id, t.regions, t.reason, t.initiated_by, t.children_total,"
        " t.not_before, t.created_at))",
        announced,
        existing,
    )
    return {row["id"]: _child_row(row) for row in before}


async def record_created(
    connection: asyncpg.Connection, event: TaskCreated
) -> list[TaskFinished]:
    """Record a task's announcement, merging with a row created earlier."""
    if event.kind is TaskKind.ACCOUNT_POLL:
        return await record_children(connection, event.parent_task_id, [event])
    await _store_announcements(connection, [event])
    return await settle_parent(connection, event.task_id)


async def record_children(
    connection: asyncpg.Connection,
    parent_id: uuid.UUID | None,
    events: Sequence[TaskCreated],
) -> list[TaskFinished]:
    """Record the announcements of children of `parent_id`, set-based.

    The same as recording each on its own: a skipped child is finished at
    once; a child that had every result before its announcement finishes
    now; one that finished before its parent was known is counted in it now.
    The same announcements again change nothing.
    """
    if parent_id is not None:
        await _ensure_parent(connection, parent_id)
    before = await _store_announcements(connection, events)

    decided: list[tuple[uuid.UUID, TaskStatus, str | None]] = []
    finished_unparented: list[TaskStatus] = []
    for event in events:
        child = before.get(event.task_id)
        if event.status is TaskStatus.SKIPPED:
            decided.append((event.task_id, TaskStatus.SKIPPED, event.reason))
        elif child is None:
            continue  # new: its results are still to come
        elif child.status not in UNFINISHED:
            if child.parent_id is None and parent_id is not None:
                finished_unparented.append(TaskStatus(child.status))
        else:
            child = replace(child, regions=list(event.regions), announced=True)
            status = child_status(child, poll_failed=False)
            if status is not None:
                decided.append((event.task_id, status, _error_summary(child)))
    rows = await _finish(connection, decided)

    finished = [finished_event(row) for row in rows]
    statuses = [TaskStatus(row["status"]) for row in rows] + finished_unparented
    if parent_id is not None and statuses:
        finished += await _count_in_parent(connection, parent_id, statuses)
    return finished


async def record_started(connection: asyncpg.Connection, event: TaskStarted) -> None:
    """A poll began: the child, and its parent, are running.

    The start is the poller's clock, taken no later than the database's now:
    a start in the future would hold off the task's timeout, and keep its
    account busy, until then.
    """
    await ensure_child(connection, event.task_id, event.account_id)
    parent_id = await connection.fetchval(
        "UPDATE discovery_tasks SET status = CASE WHEN status = 'pending'"
        " THEN 'running' ELSE status END,"
        " started_at = coalesce(started_at, least($2, now())),"
        " attempts = greatest(attempts, $3), updated_at = now() WHERE id = $1"
        " RETURNING parent_id",
        event.task_id,
        event.started_at,
        event.attempt,
    )
    if parent_id is not None:
        await connection.execute(
            "UPDATE discovery_tasks SET status = 'running', updated_at = now(),"
            " started_at = coalesce(started_at, least($2, now()))"
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
    """Each cause once, with the regions it failed: `kind: reason (r1, r2)`.

    A poll that failed as a whole (its role could not be assumed) has the same
    cause in every region, so it reads once, not once per region.
    """
    regions_by_cause: dict[str, list[str]] = {}
    for region, outcome in sorted(child.region_results.items()):
        if outcome.get("status") not in REGION_OK:
            cause = f"{outcome.get('kind') or 'failed'}: {outcome.get('error')}"
            regions_by_cause.setdefault(cause, []).append(region)
    failures = [
        f"{cause} ({', '.join(regions)})" for cause, regions in regions_by_cause.items()
    ]
    if child.error and child.error not in regions_by_cause:
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
    finished: list[TaskFinished] = []
    for row in await _finish(connection, [(task_id, status, error)]):
        finished.append(finished_event(row))
        if row["parent_id"] is not None:
            finished += await _count_in_parent(connection, row["parent_id"], [status])
    return finished


async def _finish(
    connection: asyncpg.Connection,
    decided: Sequence[tuple[uuid.UUID, TaskStatus, str | None]],
) -> list[asyncpg.Record]:
    """Give each child (task, status, error) its final status, unless it has one.

    Returns the rows finished, in the order given, after recording the polls
    of their accounts. Counting them in their parents is the caller's part.
    """
    if not decided:
        return []
    rows: list[asyncpg.Record] = await connection.fetch(
        "UPDATE discovery_tasks SET status = f.final_status,"
        " error = coalesce(f.summary, error), finished_at = now(), updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::text[])"
        " AS f(task_id, final_status, summary)"
        f" WHERE id = f.task_id AND status IN {UNFINISHED}"
        f" RETURNING {_FINISHED_COLUMNS}",
        [task_id for task_id, _, _ in decided],
        [status.value for _, status, _ in decided],
        [error for _, _, error in decided],
    )
    position = {task_id: n for n, (task_id, _, _) in enumerate(decided)}
    rows.sort(key=lambda row: position[row["id"]])
    await _record_account_polls(
        connection, [row for row in rows if row["status"] != TaskStatus.SKIPPED]
    )
    return rows


async def _record_account_polls(
    connection: asyncpg.Connection, rows: Sequence[asyncpg.Record]
) -> None:
    """Account health after finished polls, as if recorded one by one in order.

    A success resets the account; each failure after its last success adds one
    to its failures in a row and leaves its error.
    """
    succeeded: set[str] = set()
    failed: dict[str, tuple[int, str | None]] = {}
    for row in rows:
        account_id = row["account_id"]
        if account_id is None:
            continue
        if row["status"] == TaskStatus.SUCCEEDED:
            succeeded.add(account_id)
            failed.pop(account_id, None)
        else:
            failures = failed.get(account_id, (0, None))[0]
            failed[account_id] = (failures + 1, row["error"])

    if succeeded:
        await connection.execute(
            "UPDATE accounts SET last_polled_at = now(), last_success_at = now(),"
            " consecutive_failures = 0, stale_since = NULL"
            " WHERE account_id = ANY($1::text[])",
            sorted(succeeded),
        )
    if failed:
        accounts = sorted(failed)
        await connection.execute(
            "UPDATE accounts a SET last_polled_at = now(),"
            " consecutive_failures = a.consecutive_failures + f.failures,"
            " last_error = f.error, stale_since = coalesce(a.stale_since, now())"
            " FROM unnest($1::text[], $2::integer[], $3::text[])"
            " AS f(account_id, failures, error) WHERE a.account_id = f.account_id",
            accounts,
            [failed[account][0] for account in accounts],
            [failed[account][1] for account in accounts],
        )


async def _count_in_parent(
    connection: asyncpg.Connection,
    parent_id: uuid.UUID,
    statuses: Sequence[TaskStatus],
) -> list[TaskFinished]:
    """Count finished children in their parent in one statement, then settle it."""
    counts = Counter(PARENT_COUNTER[status] for status in statuses)
    columns = sorted(counts)
    assignments = ", ".join(
        f"{column} = {column} + ${n}" for n, column in enumerate(columns, start=2)
    )
    await connection.execute(
        f"UPDATE discovery_tasks SET {assignments}, updated_at = now() WHERE id = $1",
        parent_id,
        *(counts[column] for column in columns),
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


UNANNOUNCED_GRACE_SECONDS = 600.0

_CLOCK_START = "coalesce(started_at, greatest(created_at, not_before))"
"""When a task's timeout starts to run."""


async def fail_expired(
    connection: asyncpg.Connection, timeout_seconds: float
) -> list[TaskFinished]:
    """Fail every task that outlived the timeout, children first, and update parents.

    A child's time runs from its start, or while it waits, from when it is due
    (the stagger puts the last accounts of a large cycle hours after its
    creation); a cycle's from the latest of its children's. A child no
    scheduler announced (its row was made by a poll's events alone, e.g. a
    poll published by hand) fails after `UNANNOUNCED_GRACE_SECONDS`: its
    announcement, published before its poll, would have come long before.
    """
    reason = f"timed out after {timeout_seconds:g} s"
    grace = min(timeout_seconds, UNANNOUNCED_GRACE_SECONDS)
    children = await connection.fetch(
        "UPDATE discovery_tasks SET status = 'failed', finished_at = now(),"
        " updated_at = now(), error = CASE WHEN announced THEN $2 ELSE $4 END"
        f" WHERE kind = 'account_poll' AND status IN {UNFINISHED}"
        f" AND ({_CLOCK_START} < now() - make_interval(secs => $1)"
        " OR (NOT announced AND created_at < now() - make_interval(secs => $3)))"
        f" RETURNING {_FINISHED_COLUMNS}",
        timeout_seconds,
        reason,
        grace,
        f"no scheduler announced this poll within {grace:g} s",
    )
    finished = [finished_event(row) for row in children]
    await _record_account_polls(connection, children)
    failed_per_parent: defaultdict[uuid.UUID, list[TaskStatus]] = defaultdict(list)
    for row in children:
        if row["parent_id"] is not None:
            failed_per_parent[row["parent_id"]].append(TaskStatus.FAILED)
    for parent_id in sorted(failed_per_parent):
        finished += await _count_in_parent(
            connection, parent_id, failed_per_parent[parent_id]
        )
    parents = await connection.fetch(
        "UPDATE discovery_tasks p SET status = 'failed', error = $2,"
        " finished_at = now(), updated_at = now()"
        f" WHERE kind = 'cycle' AND status IN {UNFINISHED}"
        f" AND greatest(created_at, (SELECT max({_CLOCK_START})"
        " FROM discovery_tasks WHERE parent_id = p.id))"
        " < now() - make_interval(secs => $1)"
        f" RETURNING {_FINISHED_COLUMNS}",
        timeout_seconds,
        reason,
    )
    finished += [finished_event(row) for row in parents]
    return finished
