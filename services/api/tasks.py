"""Discovery tasks as operators read them: newest first, with progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import invalid
from services.api.pagination import decode_cursor, encode_cursor, rows_at_most
from services.api.schemas import ChildCounts, RegionResult, TaskDetail, TaskOut
from shared import events
from shared.db.models import DiscoveryTask
from shared.events import FINISHED_STATUSES

SCOPE = "tasks"
MAX_CHILDREN = 5000
_FINISHED = {status.value for status in FINISHED_STATUSES}


async def list_tasks(
    session: AsyncSession,
    conditions: list[ColumnElement[bool]],
    limit: int,
    cursor: str | None,
) -> tuple[list[TaskOut], str | None]:
    statement = select(DiscoveryTask).where(*conditions)
    if cursor is not None:
        created, task_id = decode_cursor(SCOPE, cursor, 2)
        after = _cursor_key(created, task_id)
        statement = statement.where(
            or_(
                DiscoveryTask.created_at < after[0],
                and_(
                    DiscoveryTask.created_at == after[0],
                    DiscoveryTask.id < after[1],
                ),
            )
        )
    statement = statement.order_by(
        DiscoveryTask.created_at.desc(), DiscoveryTask.id.desc()
    ).limit(rows_at_most(limit + 1))
    tasks = list(await session.scalars(statement))

    next_cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        last = tasks[-1]
        next_cursor = encode_cursor(SCOPE, [last.created_at.isoformat(), str(last.id)])
    now = datetime.now(UTC)
    return [task_out(task, now) for task in tasks], next_cursor


async def get_task(session: AsyncSession, task_id: uuid.UUID) -> TaskDetail | None:
    task = await session.get(DiscoveryTask, task_id)
    if task is None:
        return None
    children = list(
        await session.scalars(
            select(DiscoveryTask)
            .where(DiscoveryTask.parent_id == task_id)
            .order_by(DiscoveryTask.created_at, DiscoveryTask.account_id)
            .limit(rows_at_most(MAX_CHILDREN + 1))
        )
    )

    now = datetime.now(UTC)
    return TaskDetail(
        **task_out(task, now).model_dump(),
        child_tasks=[task_out(child, now) for child in children[:MAX_CHILDREN]],
        child_tasks_complete=len(children) <= MAX_CHILDREN,
    )


def task_out(task: DiscoveryTask, now: datetime) -> TaskOut:
    finished_children = (
        task.children_succeeded
        + task.children_partially_failed
        + task.children_failed
        + task.children_skipped
    )
    results = {
        region: _region_result(value)
        for region, value in (task.region_results or {}).items()
    }
    return TaskOut(
        task_id=task.id,
        parent_task_id=task.parent_id,
        kind=task.kind,
        cycle_id=task.cycle_id,
        account_id=task.account_id,
        regions=list(task.regions or []),
        status=task.status,
        initiated_by=task.initiated_by,
        reason=task.reason,
        error=task.error,
        region_results=results,
        children=ChildCounts(
            total=task.children_total,
            finished=finished_children,
            succeeded=task.children_succeeded,
            partially_failed=task.children_partially_failed,
            failed=task.children_failed,
            skipped=task.children_skipped,
        ),
        progress=_progress(task, finished_children, results),
        attempts=task.attempts,
        not_before=task.not_before,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        updated_at=task.updated_at,
        duration_seconds=_duration(task, now),
    )


def _region_result(value: Any) -> RegionResult:
    if not isinstance(value, dict):
        return RegionResult(status=str(value))
    counts = {
        name: {k: v for k, v in (value.get(name) or {}).items() if isinstance(v, int)}
        for name in ("added", "updated", "removed")
        if isinstance(value.get(name) or {}, dict)
    }
    extra = {k: v for k, v in value.items() if k not in RegionResult.model_fields}
    return RegionResult(
        status=_str_or_none(value.get("status")),
        error=_str_or_none(value.get("error")),
        kind=_str_or_none(value.get("kind")),
        **counts,
        **extra,
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _progress(
    task: DiscoveryTask, finished_children: int, results: dict[str, RegionResult]
) -> float:
    if task.status in _FINISHED:
        return 1.0
    if task.children_total:
        return min(1.0, finished_children / task.children_total)
    regions = task.regions or []
    if not regions:
        return 0.0
    done = sum(1 for region in regions if region in results)
    return min(1.0, done / len(regions))


def _duration(task: DiscoveryTask, now: datetime) -> float | None:
    if task.started_at is None:
        return None
    end = task.finished_at or now
    return max(0.0, (end - task.started_at).total_seconds())


def in_utc(value: datetime, field: str) -> datetime:
    """`value` in UTC; a 422 naming `field` when it has no zone or leaves the years."""
    if value.tzinfo is None:
        raise invalid(field, "give a time zone, e.g. 2024-01-01T00:00:00Z")
    try:
        return events.in_utc(value)
    except ValueError as error:
        raise invalid(field, f"out of range: {error}") from None


def _cursor_key(created: str, task_id: str) -> tuple[datetime, uuid.UUID]:
    try:
        key = datetime.fromisoformat(created), uuid.UUID(task_id)
    except ValueError:
        raise invalid("cursor", "not a cursor this API handed out") from None
    return in_utc(key[0], "cursor"), key[1]
