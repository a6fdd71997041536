"""JetStream publishing and the scheduler's key-value bucket."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import Callable, Container, Iterable
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, PubAck, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from services.scheduler.planning import CyclePlan, PlannedPoll, announcement_batches
from services.scheduler.ports import Cursor
from shared.bus import BusNames
from shared.events import (
    AccountPoll,
    Contract,
    ScheduleState,
    TaskCreated,
    TaskKind,
    TasksCreated,
    TaskStatus,
)

ACK_TIMEOUT_SECONDS = 60.0
"""Longest time for publishing one batch and having it acknowledged."""

CHUNK = 1000
"""Publishes sent back to back before awaiting the previous chunk's acks."""

STATE_KEY = "schedule"
INDEX_KEY = "cycles"


Message = tuple[str, str, Contract]
"""A message to publish: subject, `Nats-Msg-Id`, body."""


def poll_msg_id(poll: PlannedPoll) -> str:
    return f"account-poll-{poll.task_id}"


def task_msg_id(task_id: uuid.UUID) -> str:
    return f"task-created-{task_id}"


def withdrawn_msg_id(task_id: uuid.UUID) -> str:
    return f"task-withdrawn-{task_id}"


def batch_msg_id(cycle_id: str, first: int, count: int) -> str:
    """The same on every replica; batches cut differently never share one."""
    return f"tasks-created-{cycle_id}-{first}-{count}"


def announced_children(
    plan: CyclePlan,
    created_at: datetime,
    only: Container[uuid.UUID] | None = None,
) -> list[TaskCreated]:
    """The `TaskCreated` of every child (or of those in `only`), in plan order."""
    due = {poll.task_id: plan.due_at(i) for i, poll in enumerate(plan.polls)}
    return [
        TaskCreated.model_construct(
            task_id=child.task_id,
            parent_task_id=plan.parent_task_id,
            kind=TaskKind.ACCOUNT_POLL,
            cycle_id=plan.cycle_id,
            account_id=child.account_id,
            regions=child.regions,
            status=child.status,
            reason=child.reason,
            initiated_by=plan.initiated_by,
            not_before=due.get(child.task_id),
            created_at=created_at,
        )
        for child in plan.children
        if only is None or child.task_id in only
    ]


def task_batches(
    plan: CyclePlan, created_at: datetime
) -> list[tuple[str, TasksCreated]]:
    """A cycle's children in the batches of `announcement_batches`, with their ids."""
    if plan.parent_task_id is None:
        raise ValueError("only the children of a parent are announced in batches")
    children = announced_children(plan, created_at)
    return [
        (
            batch_msg_id(plan.cycle_id, first, len(batch)),
            TasksCreated.model_construct(
                cycle_id=plan.cycle_id,
                parent_task_id=plan.parent_task_id,
                first=first,
                tasks=children[first : first + len(batch)],
            ),
        )
        for first, batch in announcement_batches(plan)
    ]


class JetStreamBus:
    """Publishes tasks and polls, each with a `Nats-Msg-Id` derived from the plan.

    Children's messages are built without validation (`model_construct`): the
    plan's fields were checked against the contracts when it was made, and a
    cycle of ten thousand accounts would otherwise spend most of its time
    validating the same values again.
    """

    def __init__(self, js: JetStreamContext, names: BusNames) -> None:
        self._js = js
        self._names = names

    async def announce(self, plan: CyclePlan, created_at: datetime) -> None:
        subject = self._names.tasks_created
        if plan.parent_task_id is None:
            # A poll of one account: its task alone, as a `tasks.created`.
            await self._publish_all(
                (subject, task_msg_id(task.task_id), task)
                for task in announced_children(plan, created_at)
            )
            return

        parent = TaskCreated(
            task_id=plan.parent_task_id,
            kind=TaskKind.CYCLE,
            cycle_id=plan.cycle_id,
            initiated_by=plan.initiated_by,
            children_total=len(plan.children),
            not_before=plan.started_at,
            created_at=created_at,
        )
        batches = (
            (self._names.tasks_created_batch, msg_id, batch)
            for msg_id, batch in task_batches(plan, created_at)
        )
        await self._publish_all(
            [(subject, task_msg_id(parent.task_id), parent), *batches]
        )

    async def publish_polls(
        self, plan: CyclePlan, polls: list[PlannedPoll], requested_at: datetime
    ) -> None:
        subject = self._names.account_poll
        messages = (
            (
                subject,
                poll_msg_id(poll),
                AccountPoll.model_construct(
                    task_id=poll.task_id,
                    parent_task_id=plan.parent_task_id,
                    cycle_id=plan.cycle_id,
                    account_id=poll.account_id,
                    role_name=poll.role_name,
                    role_arn=poll.role_arn,
                    external_id=poll.external_id,
                    regions=poll.regions,
                    requested_by=plan.initiated_by,
                    requested_at=requested_at,
                ),
            )
            for poll in polls
        )
        await self._publish_all(messages)

    async def withdraw(
        self, plan: CyclePlan, reasons: dict[uuid.UUID, str], created_at: datetime
    ) -> None:
        subject = self._names.tasks_created
        await self._publish_all(
            (
                subject,
                withdrawn_msg_id(task.task_id),
                task.model_copy(
                    update={
                        "status": TaskStatus.SKIPPED,
                        "reason": reasons[task.task_id],
                    }
                ),
            )
            for task in announced_children(plan, created_at, only=reasons)
        )

    async def _publish_all(self, messages: Iterable[Message]) -> None:
        """Publish pipelined; raise unless JetStream stored (or de-duplicated) all.

        Messages go out in chunks published without a pause, and a chunk's
        acknowledgements are awaited once the next chunk is out: the socket
        gets large writes and at most two chunks wait at a time, under the
        client's own limit past which it stalls every publish.
        """
        in_flight: list[asyncio.Future[PubAck]] = []
        chunk: list[asyncio.Future[PubAck]] = []
        async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
            for subject, msg_id, message in messages:
                # No `wait_stall`: with one, every publish yields to the
                # flusher and each message costs a socket write of its own.
                chunk.append(
                    await self._js.publish_async(
                        subject,
                        message.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": msg_id},
                    )
                )
                if len(chunk) == CHUNK:
                    await asyncio.gather(*in_flight)
                    in_flight, chunk = chunk, []
            await asyncio.gather(*in_flight, *chunk)


async def scheduler_bucket(js: JetStreamContext, names: BusNames) -> KeyValue:
    """The scheduler's bucket, created on first use (one revision kept per key)."""
    try:
        return await js.key_value(names.scheduler_bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=names.scheduler_bucket, history=1, storage=StorageType.FILE
            )
        )


def _key(cycle_id: str, part: str) -> str:
    return f"cycle.{cycle_id}.{part}"


class KvCycleStore:
    """Plans, cursors, the index of cycles and the schedule state in one bucket.

    Keys: `cycle.<id>.plan` (zlib-compressed JSON, written once),
    `cycle.<id>.cursor` (JSON, compare-and-set), `cycles` (the index, JSON,
    compare-and-set) and `schedule` (ScheduleState JSON).
    """

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def create_plan(self, plan: CyclePlan) -> bool:
        blob = zlib.compress(plan.model_dump_json().encode(), level=6)
        try:
            await self._kv.create(_key(plan.cycle_id, "plan"), blob)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def load_plan(self, cycle_id: str) -> CyclePlan | None:
        value = await self._value(_key(cycle_id, "plan"))
        if value is None:
            return None
        return CyclePlan.model_validate_json(zlib.decompress(value[0]))

    async def cursor(self, cycle_id: str) -> Cursor:
        value = await self._value(_key(cycle_id, "cursor"))
        if value is None:
            return Cursor()
        data = json.loads(value[0])
        finished = data.get("finished_at")
        return Cursor(
            announced=bool(data["announced"]),
            published=int(data["published"]),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            revision=value[1],
        )

    async def advance(self, cycle_id: str, cursor: Cursor) -> Cursor | None:
        data = {
            "announced": cursor.announced,
            "published": cursor.published,
            "finished_at": cursor.finished_at.isoformat()
            if cursor.finished_at
            else None,
        }
        try:
            revision = await self._kv.update(
                _key(cycle_id, "cursor"),
                json.dumps(data).encode(),
                last=cursor.revision,
            )
        except KeyWrongLastSequenceError:
            return None
        return cursor.moved(revision=revision)

    async def register(self, cycle_id: str, created_at: datetime) -> None:
        def add(index: dict[str, Any]) -> bool:
            if cycle_id in index:
                return False
            index[cycle_id] = {"created_at": created_at.isoformat()}
            return True

        await self._change_index(add)

    async def mark_finished(self, cycle_id: str, finished_at: datetime) -> None:
        def finish(index: dict[str, Any]) -> bool:
            entry = index.setdefault(cycle_id, {})
            if entry.get("finished_at"):
                return False
            entry["finished_at"] = finished_at.isoformat()
            return True

        await self._change_index(finish)

    async def cycles(self) -> dict[str, datetime | None]:
        value = await self._value(INDEX_KEY)
        index: dict[str, Any] = json.loads(value[0]) if value else {}
        return {
            cycle_id: datetime.fromisoformat(entry["finished_at"])
            if entry.get("finished_at")
            else None
            for cycle_id, entry in index.items()
        }

    async def planned_cycles(self) -> list[str]:
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return []
        return [
            key.removeprefix("cycle.").removesuffix(".plan")
            for key in keys
            if key.startswith("cycle.") and key.endswith(".plan")
        ]

    async def forget(self, cycle_ids: list[str]) -> None:
        def drop(index: dict[str, Any]) -> bool:
            for cycle_id in cycle_ids:
                index.pop(cycle_id, None)
            return True

        await self._change_index(drop)
        for cycle_id in cycle_ids:
            await self._kv.purge(_key(cycle_id, "plan"))
            await self._kv.purge(_key(cycle_id, "cursor"))

    async def read_state(self) -> ScheduleState | None:
        value = await self._value(STATE_KEY)
        return ScheduleState.model_validate_json(value[0]) if value else None

    async def write_state(self, state: ScheduleState) -> None:
        await self._kv.put(STATE_KEY, state.model_dump_json().encode())

    async def _value(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None:
            return None
        return entry.value, entry.revision or 0

    async def _change_index(
        self, change: Callable[[dict[str, Any]], bool], attempts: int = 20
    ) -> None:
        """Read-change-write the index with compare-and-set, retrying on races."""
        for _ in range(attempts):
            value = await self._value(INDEX_KEY)
            index: dict[str, Any] = json.loads(value[0]) if value else {}
            if not change(index):
                return
            try:
                await self._kv.update(
                    INDEX_KEY, json.dumps(index).encode(), last=value[1] if value else 0
                )
            except KeyWrongLastSequenceError:
                continue
            return
        raise RuntimeError("the cycle index kept changing under us")
