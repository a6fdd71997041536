"""The scheduler's logic: fire cycles on the cron, carry every cycle to its end.

Exactly once, across replicas and restarts:

- A cycle is planned once. Its id comes from the cron fire time (or is fresh
  for an operator's request), its task ids from the cycle id, and its plan is
  stored with a create-if-absent write; a replica that loses that race uses
  the stored plan.
- The plan's progress is a cursor (announced, published count) moved with
  compare-and-set. Any replica may publish the polls that are due; each poll
  carries its task id as `Nats-Msg-Id`, and each batch announcing children
  an id made of the cycle and the batch's place in the plan, so JetStream
  keeps one copy when two replicas publish it, or a restarted replica
  publishes again what it sent just before it died and before it could move
  the cursor.
- The cursor only moves after JetStream acknowledged the polls, so a crash
  loses nothing; a restarted or second replica resumes from the cursor.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from services.scheduler.clock import Clock
from services.scheduler.planning import (
    CycleKind,
    CyclePlan,
    PlannedPoll,
    cron_interval,
    ineligibility,
    manual_cycle_id,
    next_fire,
    overrun,
    plan_cycle,
    previous_fire,
    scheduled_cycle_id,
)
from services.scheduler.ports import AccountsReader, Cursor, CycleStore, TaskBus
from shared.events import CycleProgress, ScheduleState

log = structlog.get_logger(__name__)

T = TypeVar("T")

PUBLISH_BATCH = 2000
"""Most polls published at once when many are due together (under nats-py's
limit of 4,000 unacknowledged pipelined publishes)."""

STATE_EVERY = timedelta(seconds=1)
"""Least time between two progress updates of the operators' view."""

CATCH_UP = timedelta(minutes=5)
"""A fire time at most this long before a replica starts is still run."""

RETENTION = timedelta(hours=6)
"""How long a finished cycle's plan is kept (it marks the cycle as done)."""


class CommandRejected(Exception):
    """An operator's command that cannot be carried out; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ScheduleConfig:
    enabled: bool
    cron: str
    stagger_seconds: float
    max_concurrent: int
    scan_seconds: float = 5.0
    retry_seconds: float = 5.0
    command_timeout_seconds: float = 10.0


class Scheduler:
    """One replica of the scheduler."""

    def __init__(
        self,
        config: ScheduleConfig,
        clock: Clock,
        accounts: AccountsReader,
        bus: TaskBus,
        store: CycleStore,
    ) -> None:
        self._config = config
        self._clock = clock
        self._accounts = accounts
        self._bus = bus
        self._store = store
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._plans: dict[str, CyclePlan] = {}
        self._planning = asyncio.Lock()
        self._next_run_at: datetime | None = None
        self._state_written_at: datetime | None = None

    # --- Running ------------------------------------------------------------

    async def run(self) -> None:
        """Resume unfinished cycles, then fire cycles on the cron until cancelled."""
        self._next_run_at = next_fire(self._config.cron, self._clock.now())
        log.info(
            "scheduler_started",
            enabled=self._config.enabled,
            cron=self._config.cron,
            stagger_seconds=self._config.stagger_seconds,
            max_concurrent=self._config.max_concurrent,
            next_run_at=self._next_run_at.isoformat(),
        )
        await self._retrying("write_state", self._write_state)
        await self._retrying("list_plans", self._register_unlisted)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._cron_loop())
                group.create_task(self._scan_loop())
        finally:
            for runner in self._runners.values():
                runner.cancel()

    async def _cron_loop(self) -> None:
        fire = self._clock.now()
        missed = previous_fire(self._config.cron, fire + timedelta(seconds=1))
        if missed <= fire and fire - missed <= CATCH_UP:
            # Down at the fire time (a restart, a deploy): run that cycle now,
            # or join it if another replica did. Its id makes this safe.
            log.info("cycle_catching_up", fire_time=missed.isoformat())
            await self._fire(missed)
        while True:
            fire = next_fire(self._config.cron, max(fire, self._clock.now()))
            self._next_run_at = fire
            await self._clock.sleep_until(fire)
            self._next_run_at = next_fire(self._config.cron, fire)
            await self._fire(fire)
            log.info("next_run", next_run_at=self._next_run_at.isoformat())

    async def _fire(self, fire: datetime) -> None:
        if not self._config.enabled:
            log.info(
                "cycle_disabled",
                fire_time=fire.isoformat(),
                reason="SCHEDULED_POLLING_ENABLED is false",
            )
            await self._retrying("write_state", self._write_state)
            return
        try:
            await self._retrying(
                "start_cycle",
                lambda: self.start_cycle(
                    CycleKind.SCHEDULED, None, scheduled_cycle_id(fire), fire
                ),
                give_up_at=self._next_run_at,
            )
        except CommandRejected:
            pass  # an empty cycle, already logged
        except TimeoutError:
            log.error("cycle_abandoned", fire_time=fire.isoformat())

    async def _register_unlisted(self) -> None:
        """List plans stored by a replica that stopped before listing them."""
        listed = await self._store.cycles()
        for cycle_id in await self._store.planned_cycles():
            if cycle_id not in listed:
                log.info("cycle_recovered", cycle_id=cycle_id)
                await self._store.register(cycle_id, self._clock.now())

    async def _scan_loop(self) -> None:
        """Pick up cycles this replica did not start (another's, or before restart)."""
        while True:
            try:
                cycles = await self._store.cycles()
            except Exception:
                log.warning("cycle_scan_failed", exc_info=True)
                cycles = {}
            for cycle_id, finished_at in cycles.items():
                if finished_at is None:
                    self._ensure_runner(cycle_id)
            await self._clock.sleep_until(
                self._clock.now() + timedelta(seconds=self._config.scan_seconds)
            )

    # --- Commands -----------------------------------------------------------

    async def start_cycle(
        self,
        kind: CycleKind,
        initiated_by: str | None,
        cycle_id: str | None = None,
        started_at: datetime | None = None,
    ) -> CyclePlan:
        """Plan a cycle (or join the one already planned), announce it, run it."""
        async with self._planning:
            cycle_id = cycle_id or manual_cycle_id(kind)
            started_at = started_at or self._clock.now()
            accounts = await self._accounts.accounts()
            busy = await self._busy()
            plan = plan_cycle(
                cycle_id,
                kind,
                accounts,
                busy,
                started_at,
                self._config.stagger_seconds,
                initiated_by,
            )
            if not plan.children:
                log.info("cycle_empty", cycle_id=cycle_id, accounts=len(accounts))
                raise CommandRejected("invalid", "no account is eligible for polling")
            plan = await self._adopt(plan)

        await self._announce(plan)
        self._ensure_runner(plan.cycle_id)

        return plan

    async def poll_account(self, account_id: str, requested_by: str) -> uuid.UUID:
        """Poll one account now, as a cycle of its own with no parent task."""
        async with self._planning:
            account = await self._accounts.account(account_id)
            if account is None:
                raise CommandRejected("not_found", f"no account {account_id}")
            reason = ineligibility(account)
            if reason is not None:
                raise CommandRejected("invalid", f"cannot be polled: {reason}")
            busy = await self._busy()
            if account_id in busy:
                raise CommandRejected("conflict", busy[account_id])
            plan = plan_cycle(
                manual_cycle_id(CycleKind.ACCOUNT),
                CycleKind.ACCOUNT,
                [account],
                {},
                self._clock.now(),
                0,
                requested_by,
            )
            plan = await self._adopt(plan)

        await self._announce(plan)
        runner = self._ensure_runner(plan.cycle_id)
        try:
            await asyncio.wait_for(
                asyncio.shield(runner), self._config.command_timeout_seconds
            )
        except TimeoutError:
            # The plan is stored: this replica or another publishes it soon.
            log.warning("poll_not_yet_published", cycle_id=plan.cycle_id)

        return plan.polls[0].task_id

    async def wait_for_cycle(self, cycle_id: str) -> None:
        """Return once this replica has carried `cycle_id` to its end."""
        runner = self._runners.get(cycle_id)
        if runner is not None:
            await asyncio.shield(runner)

    # --- Cycles -------------------------------------------------------------

    async def _adopt(self, plan: CyclePlan) -> CyclePlan:
        """Store `plan`, or return the plan another replica stored for the cycle."""
        if await self._store.create_plan(plan):
            self._log_planned(plan)
        else:
            stored = await self._store.load_plan(plan.cycle_id)
            if stored is None:
                raise RuntimeError(f"cycle {plan.cycle_id} exists without a plan")
            log.debug("cycle_joined", cycle_id=plan.cycle_id)
            plan = stored
        self._plans[plan.cycle_id] = plan
        # Every replica that saw the plan lists it, so a crash right after
        # the plan was stored cannot leave it out of the index.
        await self._store.register(plan.cycle_id, self._clock.now())

        return plan

    def _log_planned(self, plan: CyclePlan) -> None:
        log.info(
            "cycle_planned",
            cycle_id=plan.cycle_id,
            kind=plan.kind,
            parent_task_id=str(plan.parent_task_id) if plan.parent_task_id else None,
            initiated_by=plan.initiated_by,
            accounts=len(plan.children),
            to_publish=len(plan.polls),
            skipped=len(plan.skipped),
            started_at=plan.started_at.isoformat(),
            last_due_at=plan.due_at(max(len(plan.polls) - 1, 0)).isoformat(),
        )
        for child in plan.skipped:
            log.warning(
                "account_skipped",
                cycle_id=plan.cycle_id,
                account_id=child.account_id,
                task_id=str(child.task_id),
                reason=child.reason,
            )
        if plan.kind is CycleKind.ACCOUNT:
            return
        late = overrun(
            len(plan.children),
            plan.stagger_seconds,
            cron_interval(self._config.cron, plan.started_at),
        )
        if late is not None:
            log.warning(
                "cycle_overruns_interval",
                cycle_id=plan.cycle_id,
                accounts=late.accounts,
                stagger_seconds=late.stagger_seconds,
                needed_seconds=late.needed_seconds,
                interval_seconds=late.interval_seconds,
            )

    async def _plan(self, cycle_id: str) -> CyclePlan | None:
        if cycle_id not in self._plans:
            plan = await self._store.load_plan(cycle_id)
            if plan is None:
                return None
            self._plans[cycle_id] = plan
        return self._plans[cycle_id]

    async def _announce(self, plan: CyclePlan) -> Cursor:
        """Publish the cycle's tasks once (de-duplicated if published again)."""
        cursor = await self._store.cursor(plan.cycle_id)
        while not cursor.announced:
            await self._bus.announce(plan, plan.started_at)
            moved = await self._store.advance(
                plan.cycle_id, cursor.moved(announced=True)
            )
            cursor = moved or await self._store.cursor(plan.cycle_id)
        return cursor

    def _ensure_runner(self, cycle_id: str) -> asyncio.Task[None]:
        runner = self._runners.get(cycle_id)
        if runner is None or runner.done():
            runner = asyncio.create_task(self._run_cycle(cycle_id))
            self._runners[cycle_id] = runner
            runner.add_done_callback(lambda _: self._forget_runner(cycle_id, runner))
        return runner

    def _forget_runner(self, cycle_id: str, runner: asyncio.Task[None]) -> None:
        if self._runners.get(cycle_id) is runner:
            del self._runners[cycle_id]

    async def _run_cycle(self, cycle_id: str) -> None:
        """Publish the cycle's polls at their due times, then close the cycle."""
        plan = await self._retrying("load_plan", lambda: self._plan(cycle_id))
        if plan is None:
            log.error("cycle_plan_missing", cycle_id=cycle_id)
            return
        polls = plan.polls
        cursor = await self._retrying("announce", lambda: self._announce(plan))

        while cursor.published < len(polls) and cursor.finished_at is None:
            await self._clock.sleep_until(plan.due_at(cursor.published))
            cursor = await self._retrying(
                "publish", functools.partial(self._publish_due, plan, polls, cursor)
            )

        if cursor.finished_at is None:
            await self._retrying("finish", lambda: self._finish(plan, cursor))
        else:
            finished_at = cursor.finished_at
            await self._retrying(
                "mark_finished",
                lambda: self._store.mark_finished(cycle_id, finished_at),
            )

    async def _publish_due(
        self, plan: CyclePlan, polls: list[PlannedPoll], cursor: Cursor
    ) -> Cursor:
        now = self._clock.now()
        end = cursor.published
        while end < min(len(polls), cursor.published + PUBLISH_BATCH):
            if plan.due_at(end) > now:
                break
            end += 1
        batch = polls[cursor.published : end]
        if not batch:
            return cursor

        withdrawn = await self._no_longer_eligible(batch)
        if withdrawn:
            await self._bus.withdraw(plan, withdrawn, plan.started_at)
            for task_id, reason in withdrawn.items():
                log.info(
                    "poll_withdrawn",
                    cycle_id=plan.cycle_id,
                    task_id=str(task_id),
                    reason=reason,
                )
        due = [poll for poll in batch if poll.task_id not in withdrawn]
        if due:
            await self._bus.publish_polls(plan, due, now)
        moved = await self._store.advance(plan.cycle_id, cursor.moved(published=end))
        if moved is None:
            return await self._store.cursor(plan.cycle_id)

        for poll in batch:
            log.debug(
                "poll_published",
                cycle_id=plan.cycle_id,
                account_id=poll.account_id,
                task_id=str(poll.task_id),
            )
        # A one-account poll is not a cycle of the schedule: operators see
        # it as a task, not in the schedule state.
        if plan.kind is not CycleKind.ACCOUNT and self._state_due(
            moved.published == len(polls)
        ):
            await self._write_state(current=self._progress(plan, moved))

        return moved

    async def _no_longer_eligible(
        self, polls: list[PlannedPoll]
    ) -> dict[uuid.UUID, str]:
        """Polls whose account was deleted or became ineligible since the plan."""
        now = await self._accounts.accounts_by_id([poll.account_id for poll in polls])
        withdrawn: dict[uuid.UUID, str] = {}
        for poll in polls:
            account = now.get(poll.account_id)
            reason = (
                "the account was deleted" if account is None else ineligibility(account)
            )
            if reason is not None:
                withdrawn[poll.task_id] = f"no longer eligible when due: {reason}"
        return withdrawn

    async def _finish(self, plan: CyclePlan, cursor: Cursor) -> None:
        now = self._clock.now()
        moved = await self._store.advance(plan.cycle_id, cursor.moved(finished_at=now))
        if moved is None:
            return

        await self._store.mark_finished(plan.cycle_id, now)
        progress = self._progress(plan, moved)
        log.info(
            "cycle_finished",
            cycle_id=plan.cycle_id,
            kind=plan.kind,
            published=progress.published,
            skipped=progress.skipped,
            accounts=progress.accounts_total,
            duration_seconds=round((now - plan.started_at).total_seconds(), 3),
            next_run_at=self._next_run_at.isoformat() if self._next_run_at else None,
        )
        if plan.kind is not CycleKind.ACCOUNT:
            await self._write_state(finished=progress)
        await self._prune(now)

    async def _prune(self, now: datetime) -> None:
        cycles = await self._store.cycles()
        old = [
            cycle_id
            for cycle_id, finished_at in cycles.items()
            if finished_at is not None and now - finished_at > RETENTION
        ]
        if old:
            await self._store.forget(old)
            for cycle_id in old:
                self._plans.pop(cycle_id, None)

    async def _busy(self) -> dict[str, str]:
        """Accounts whose previous poll is not over, with the reason.

        Besides the tasks the database says are pending or running, a poll
        still waiting in a cycle, or published but not yet recorded by the
        reconciler, keeps its account busy. The reads go in that order (the
        cycles' cursors, then which published tasks are recorded, then which
        tasks are unfinished): a task recorded between two of them is then
        seen by the later one, never missed by both.
        """
        busy: dict[str, str] = {}
        published: dict[uuid.UUID, tuple[str, str]] = {}
        for cycle_id in await self._store.cycles():
            plan = await self._plan(cycle_id)
            if plan is None:
                continue
            cursor = await self._store.cursor(cycle_id)
            for index, poll in enumerate(plan.polls):
                if index >= cursor.published and cursor.finished_at is None:
                    busy.setdefault(
                        poll.account_id,
                        f"previous poll {poll.task_id} is still waiting "
                        f"in cycle {cycle_id}",
                    )
                else:
                    published[poll.task_id] = (poll.account_id, cycle_id)

        recorded = await self._accounts.recorded(list(published))
        for task, (account_id, cycle_id) in published.items():
            if task not in recorded:
                busy.setdefault(
                    account_id,
                    f"previous poll {task} of cycle {cycle_id} is queued "
                    "(published, not yet recorded)",
                )

        return busy | await self._accounts.unfinished_polls()

    # --- Schedule state -----------------------------------------------------

    def _progress(self, plan: CyclePlan, cursor: Cursor) -> CycleProgress:
        waiting = len(plan.polls) - cursor.published
        return CycleProgress(
            cycle_id=plan.cycle_id,
            parent_task_id=plan.parent_task_id or plan.children[0].task_id,
            started_at=plan.started_at,
            accounts_total=len(plan.children),
            published=cursor.published,
            skipped=len(plan.skipped),
            waiting=waiting,
            next_due_at=plan.due_at(cursor.published) if waiting else None,
        )

    def _state_due(self, last_batch: bool) -> bool:
        """Throttle progress updates when polls come in quick batches."""
        now = self._clock.now()
        if last_batch or self._state_written_at is None:
            due = True
        else:
            due = now - self._state_written_at >= STATE_EVERY
        if due:
            self._state_written_at = now
        return due

    async def _write_state(
        self,
        current: CycleProgress | None = None,
        finished: CycleProgress | None = None,
    ) -> None:
        """Update the operators' view; fields this replica does not know are kept."""
        stored = await self._store.read_state()
        current_cycle = current or (stored.current_cycle if stored else None)
        last_cycle = finished or (stored.last_cycle if stored else None)
        if (
            last_cycle
            and current_cycle
            and current_cycle.cycle_id in (last_cycle.cycle_id,)
        ):
            current_cycle = None

        await self._store.write_state(
            ScheduleState(
                enabled=self._config.enabled,
                cron=self._config.cron,
                stagger_seconds=self._config.stagger_seconds,
                max_concurrent=self._config.max_concurrent,
                next_run_at=self._next_run_at,
                current_cycle=current_cycle,
                last_cycle=last_cycle,
                updated_at=self._clock.now(),
            )
        )

    # --- Failures -----------------------------------------------------------

    async def _retrying(
        self,
        step: str,
        action: Callable[[], Awaitable[T]],
        give_up_at: datetime | None = None,
    ) -> T:
        """Run `action` until it succeeds, logging each failure.

        The bus or the database being away for a while must not end a cycle.
        Raises TimeoutError once `give_up_at` has passed.
        """
        attempt = 1
        while give_up_at is None or self._clock.now() < give_up_at:
            try:
                return await action()
            except CommandRejected:
                raise
            except Exception as error:
                log.warning(
                    "step_failed",
                    step=step,
                    attempt=attempt,
                    error=repr(error),
                    retry_in_seconds=self._config.retry_seconds,
                )
            attempt += 1
            await self._clock.sleep_until(
                self._clock.now() + timedelta(seconds=self._config.retry_seconds)
            )
        raise TimeoutError(f"{step} kept failing until {give_up_at}")
