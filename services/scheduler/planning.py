"""Cycle planning: who is eligible, who is skipped, when each poll is due.

Pure functions and value objects; nothing here touches the database or the bus.
Every id is derived from the cycle id, so two replicas planning the same cycle
name the same tasks.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from croniter import croniter
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from shared.events import (
    AccountId,
    AuthMethod,
    ExternalId,
    RegionName,
    RoleArn,
    RoleName,
    TaskStatus,
)

TASK_NAMESPACE = uuid.UUID("5b0f6c1e-8a53-4c55-9d1c-2f7d3c0a9e41")
"""uuid5 namespace of every task id the scheduler makes."""

BATCH_CHILDREN = 200
"""Most children announced in one `tasks.created_batch` message."""

BATCH_REGIONS = 3200
"""Most regions, its children's together, in one such message.

With every field at its longest (a 32-character name for each region, the
longest skip reason, a 255-character initiator) a batch stays under 512 KiB,
half of NATS's default payload limit, however the regions are spread.
"""


class CronError(ValueError):
    """The cron expression never fires or cannot be read."""


@dataclass(frozen=True)
class AccountRow:
    """What the scheduler reads of an account."""

    account_id: str
    auth_method: str
    is_active: bool
    default_role_name: str | None
    role_arn: str | None
    external_id: str | None
    regions: tuple[str, ...]


def ineligibility(account: AccountRow) -> str | None:
    """Why the account cannot be polled, or None when it can."""
    if account.auth_method != AuthMethod.INSTANCE_ROLE:
        return f"auth method is {account.auth_method}, which is never polled"
    if not account.is_active:
        return "account is inactive"
    if not (account.default_role_name or account.role_arn):
        return "account has neither a role name nor a role ARN"
    if not account.regions:
        return "account has no region"
    fields = [
        ("account id", account.account_id),
        ("role name", account.default_role_name),
        ("role ARN", account.role_arn),
        ("external id", account.external_id),
    ] + [("region", region) for region in account.regions]
    for field, value in fields:
        if value is not None and not _valid(field, value):
            return f"{field} {value!r} cannot be carried by a poll"
    return None


_CONSTRAINTS: dict[str, TypeAdapter[str]] = {
    "account id": TypeAdapter(AccountId),
    "role name": TypeAdapter(RoleName),
    "role ARN": TypeAdapter(RoleArn),
    "external id": TypeAdapter(ExternalId),
    "region": TypeAdapter(RegionName),
}


@functools.lru_cache(maxsize=65_536)
def _valid(field: str, value: str) -> bool:
    """Whether `value` meets the contract's constraint; values repeat a lot."""
    try:
        _CONSTRAINTS[field].validate_python(value)
    except ValidationError:
        return False
    return True


class CycleKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    ACCOUNT = "account"


class PlannedPoll(BaseModel):
    """One child of a cycle: a poll to publish, or a skip with its reason."""

    model_config = ConfigDict(frozen=True)

    task_id: uuid.UUID
    account_id: str
    regions: list[str]
    role_name: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    status: Literal[TaskStatus.PENDING, TaskStatus.SKIPPED] = TaskStatus.PENDING
    reason: str | None = None


class CyclePlan(BaseModel):
    """A cycle as planned once, by whichever replica got there first."""

    model_config = ConfigDict(frozen=True)

    cycle_id: str
    kind: CycleKind
    parent_task_id: uuid.UUID | None
    initiated_by: str | None = None
    started_at: AwareDatetime
    stagger_seconds: float = Field(ge=0)
    children: list[PlannedPoll]

    @property
    def polls(self) -> list[PlannedPoll]:
        """The children to publish, in order; the i-th is due at `due_at(i)`."""
        return [child for child in self.children if child.status == TaskStatus.PENDING]

    @property
    def skipped(self) -> list[PlannedPoll]:
        return [child for child in self.children if child.status == TaskStatus.SKIPPED]

    def due_at(self, index: int) -> datetime:
        return self.started_at + timedelta(seconds=index * self.stagger_seconds)


def announcement_batches(plan: CyclePlan) -> list[tuple[int, list[PlannedPoll]]]:
    """The children in plan order, cut into (position of the first, children).

    A batch closes at BATCH_CHILDREN children or before its regions would
    pass BATCH_REGIONS. It depends on the stored plan alone, so every replica
    cuts the same batches.
    """
    batches: list[tuple[int, list[PlannedPoll]]] = []
    first, regions = 0, 0
    for position, child in enumerate(plan.children):
        full = position - first == BATCH_CHILDREN
        if position > first and (full or regions + len(child.regions) > BATCH_REGIONS):
            batches.append((first, plan.children[first:position]))
            first, regions = position, 0
        regions += len(child.regions)
    if plan.children:
        batches.append((first, plan.children[first:]))

    return batches


def task_id(cycle_id: str, account_id: str | None = None) -> uuid.UUID:
    """The parent's id (no account) or a child's id, the same on every replica."""
    return uuid.uuid5(TASK_NAMESPACE, f"{cycle_id}/{account_id or 'parent'}")


def scheduled_cycle_id(fire_time: datetime) -> str:
    return "scheduled-" + fire_time.strftime("%Y%m%dT%H%M%SZ")


def manual_cycle_id(kind: CycleKind) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def plan_cycle(
    cycle_id: str,
    kind: CycleKind,
    accounts: list[AccountRow],
    busy: dict[str, str],
    started_at: datetime,
    stagger_seconds: float,
    initiated_by: str | None = None,
) -> CyclePlan:
    """Plan a cycle over the eligible accounts, skipping the busy ones.

    `busy` maps an account id to why its previous poll is not over. Accounts
    are taken in account-id order so every replica plans the same order.
    """
    children = [
        _child(cycle_id, account, busy.get(account.account_id))
        for account in sorted(accounts, key=lambda account: account.account_id)
        if ineligibility(account) is None
    ]
    parent = task_id(cycle_id) if kind is not CycleKind.ACCOUNT else None

    return CyclePlan(
        cycle_id=cycle_id,
        kind=kind,
        parent_task_id=parent,
        initiated_by=initiated_by,
        started_at=started_at,
        stagger_seconds=stagger_seconds,
        children=children,
    )


def _child(cycle_id: str, account: AccountRow, busy_reason: str | None) -> PlannedPoll:
    # Built without validation: eligibility has checked the fields already.
    return PlannedPoll.model_construct(
        task_id=task_id(cycle_id, account.account_id),
        account_id=account.account_id,
        regions=list(account.regions),
        role_name=account.default_role_name,
        role_arn=account.role_arn,
        external_id=account.external_id,
        status=TaskStatus.SKIPPED if busy_reason else TaskStatus.PENDING,
        reason=busy_reason,
    )


@dataclass(frozen=True)
class Overrun:
    """A cycle whose staggered starts need longer than the time between cycles."""

    accounts: int
    stagger_seconds: float
    needed_seconds: float
    interval_seconds: float


def overrun(
    accounts: int, stagger_seconds: float, interval: timedelta
) -> Overrun | None:
    """The numbers, when `accounts * stagger` exceeds the interval; else None."""
    needed = accounts * stagger_seconds
    if needed <= interval.total_seconds():
        return None
    return Overrun(accounts, stagger_seconds, needed, interval.total_seconds())


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time strictly after `after` when `cron` fires (UTC)."""
    return _fire(cron, after, forward=True)


def previous_fire(cron: str, before: datetime) -> datetime:
    """The last time strictly before `before` when `cron` fired (UTC)."""
    return _fire(cron, before, forward=False)


def cron_interval(cron: str, at: datetime) -> timedelta:
    """Time between the two fires that follow `at` (a cycle's time budget)."""
    first = next_fire(cron, at)
    return next_fire(cron, first) - first


def _fire(cron: str, start: datetime, forward: bool) -> datetime:
    try:
        schedule = croniter(cron, start)
        fire: datetime = (
            schedule.get_next(datetime) if forward else schedule.get_prev(datetime)
        )
    except (ValueError, KeyError) as error:  # croniter's errors are ValueErrors
        raise CronError(f"{cron!r}: {error}") from error
    return fire
