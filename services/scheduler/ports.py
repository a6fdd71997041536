"""What the scheduler's logic needs from the outside, as protocols."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from services.scheduler.planning import AccountRow, CyclePlan, PlannedPoll
from shared.events import ScheduleState


class AccountsReader(Protocol):
    """The database, read-only."""

    async def accounts(self) -> list[AccountRow]: ...

    async def account(self, account_id: str) -> AccountRow | None: ...

    async def accounts_by_id(self, account_ids: list[str]) -> dict[str, AccountRow]:
        """Those of `account_ids` still in the inventory, as they are now."""
        ...

    async def unfinished_polls(self) -> dict[str, str]:
        """Account id -> why its last poll is not over (pending or running)."""
        ...

    async def recorded(self, task_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `task_ids` the reconciler has recorded."""
        ...


class TaskBus(Protocol):
    """Publishing to JetStream, de-duplicated by task id."""

    async def announce(self, plan: CyclePlan, created_at: datetime) -> None:
        """Announce the plan's tasks, de-duplicated by ids derived from the plan.

        A cycle's parent comes as `tasks.created`, its children in batches
        (`tasks.created_batch`); a poll of one account as one `tasks.created`.
        """
        ...

    async def publish_polls(
        self, plan: CyclePlan, polls: list[PlannedPoll], requested_at: datetime
    ) -> None:
        """Publish `account.poll` for each of `polls`; returns once all are stored."""
        ...

    async def withdraw(
        self, plan: CyclePlan, reasons: dict[uuid.UUID, str], created_at: datetime
    ) -> None:
        """Announce the plan's children in `reasons` again, as skipped for them."""
        ...


@dataclass(frozen=True)
class Cursor:
    """How far a cycle has got; `revision` is the store's, for compare-and-set."""

    announced: bool = False
    published: int = 0
    finished_at: datetime | None = None
    revision: int = 0

    def moved(self, **changes: object) -> Cursor:
        return replace(self, **changes)  # type: ignore[arg-type]


class CycleStore(Protocol):
    """Cycle plans, their cursors and the schedule state, shared by replicas."""

    async def create_plan(self, plan: CyclePlan) -> bool:
        """Store `plan` unless its cycle exists; True when this call stored it."""
        ...

    async def load_plan(self, cycle_id: str) -> CyclePlan | None: ...

    async def cursor(self, cycle_id: str) -> Cursor: ...

    async def advance(self, cycle_id: str, cursor: Cursor) -> Cursor | None:
        """Store `cursor` if the stored one is still at `cursor.revision`.

        Returns the stored cursor with its new revision, or None when another
        replica moved it first.
        """
        ...

    async def register(self, cycle_id: str, created_at: datetime) -> None: ...

    async def mark_finished(self, cycle_id: str, finished_at: datetime) -> None: ...

    async def cycles(self) -> dict[str, datetime | None]:
        """Every known cycle id -> when it finished (None: still running)."""
        ...

    async def planned_cycles(self) -> list[str]:
        """Every cycle with a stored plan, listed in the index or not."""
        ...

    async def forget(self, cycle_ids: list[str]) -> None: ...

    async def read_state(self) -> ScheduleState | None: ...

    async def write_state(self, state: ScheduleState) -> None: ...
