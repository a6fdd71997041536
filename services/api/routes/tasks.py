"""Discovery tasks and the schedule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import ColumnElement

from services.api import tasks
from services.api.deps import Reader, RuntimeDep, SessionDep
from services.api.errors import NOT_FOUND, READ_ERRORS, invalid, not_found
from services.api.ids import AccountQuery
from services.api.pagination import CursorParam, Limit, Page
from services.api.schedule import read_schedule
from services.api.schemas import ScheduleOut, TaskDetail, TaskOut
from shared.db.models import DiscoveryTask
from shared.events import TaskStatus

router = APIRouter(tags=["tasks"])

ParentQuery = Annotated[
    str | None,
    Query(
        description="A parent task id, or `none` for top-level tasks only.",
        max_length=64,
    ),
]


@router.get("/tasks", responses=READ_ERRORS)
async def list_tasks(
    _: Reader,
    session: SessionDep,
    status: TaskStatus | None = None,
    account: AccountQuery = None,
    parent: ParentQuery = None,
    since: Annotated[
        datetime | None, Query(description="Created at or after (ISO 8601).")
    ] = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[TaskOut]:
    """Discovery tasks, newest first."""
    conditions = task_filters(status, account, parent, since)
    items, next_cursor = await tasks.list_tasks(session, conditions, limit, cursor)

    return Page(items=items, next_cursor=next_cursor)


@router.get("/tasks/{task_id}", responses={**READ_ERRORS, **NOT_FOUND})
async def get_task(task_id: uuid.UUID, _: Reader, session: SessionDep) -> TaskDetail:
    """A task with its children, per-region counts, errors, progress and duration."""
    task = await tasks.get_task(session, task_id)
    if task is None:
        raise not_found(f"task {task_id}")
    return task


@router.get("/schedule", responses=READ_ERRORS)
async def get_schedule(_: Reader, runtime: RuntimeDep) -> ScheduleOut:
    """Next run, the cycle in progress and the poll queue."""
    return await read_schedule(runtime.js, runtime.names)


def task_filters(
    status: TaskStatus | None,
    account: str | None,
    parent: str | None,
    since: datetime | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(DiscoveryTask.status == status.value)
    if account is not None:
        conditions.append(DiscoveryTask.account_id == account)
    if parent == "none":
        conditions.append(DiscoveryTask.parent_id.is_(None))
    elif parent is not None:
        try:
            conditions.append(DiscoveryTask.parent_id == uuid.UUID(parent))
        except ValueError:
            raise invalid("parent", "a task id (UUID), or `none`") from None
    if since is not None:
        conditions.append(DiscoveryTask.created_at >= tasks.in_utc(since, "since"))
    return conditions
