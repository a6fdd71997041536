"""Polling one account: assume its role, discover its regions, report each.

Knows nothing of the broker: results leave through an `Outbox`, AWS is
reached through an `AccountGateway`, both given by the wiring.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import structlog

from services.poller.aws import AccountSession, DiscoveryError, RegionStats
from shared.events import (
    AccountPoll,
    DiscoveryFailed,
    FailureKind,
    RegionSnapshot,
    TaskStarted,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


class AccountGateway(Protocol):
    """The AWS side (`services.poller.aws.AwsAccess`); synchronous, run in threads."""

    def open_account(self, poll: AccountPoll) -> AccountSession: ...

    def discover_region(
        self,
        account: AccountSession,
        region: str,
        *,
        calls_per_second: float,
        cancelled: threading.Event,
    ) -> tuple[RegionSnapshot, RegionStats]: ...


class Outbox(Protocol):
    """Where a poll's events go; each call returns once the event is stored."""

    async def task_started(self, event: TaskStarted) -> None: ...

    async def region_discovered(
        self,
        poll: AccountPoll,
        region: str,
        started_at: datetime,
        finished_at: datetime,
        snapshot: RegionSnapshot,
    ) -> None: ...

    async def discovery_failed(self, event: DiscoveryFailed) -> None: ...


@dataclass(frozen=True)
class PollLimits:
    region_concurrency: int = 4
    calls_per_second: float = 5.0
    region_timeout_seconds: float = 900.0


@dataclass
class PollOutcome:
    """What became of each region of a poll."""

    discovered: list[str] = field(default_factory=list)
    failed: dict[str, FailureKind] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Poller:
    """Runs account polls; one instance serves every poll of the process."""

    def __init__(
        self,
        aws: AccountGateway,
        outbox: Outbox,
        limits: PollLimits,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._aws = aws
        self._outbox = outbox
        self._limits = limits
        self._executor = executor
        self._clock = clock

    async def poll(self, poll: AccountPoll, attempt: int = 1) -> PollOutcome:
        """Poll every region of the account and publish what became of each.

        Returns once every event of the poll is stored; raises only when an
        event could not be published (the poll should then be retried).
        """
        started = time.monotonic()
        started_at = self._clock()
        await self._outbox.task_started(
            TaskStarted(
                task_id=poll.task_id,
                account_id=poll.account_id,
                started_at=started_at,
                attempt=attempt,
            )
        )
        outcome = PollOutcome()
        try:
            account = await self._in_thread(
                self._limits.region_timeout_seconds, self._aws.open_account, poll
            )
        except Exception as error:
            await self._fail_poll(poll, started_at, error, outcome)
        else:
            await self._discover_regions(poll, account, outcome)

        log.info(
            "poll_finished",
            attempt=attempt,
            regions_discovered=len(outcome.discovered),
            regions_failed=len(outcome.failed),
            seconds=round(time.monotonic() - started, 3),
        )
        return outcome

    async def _fail_poll(
        self,
        poll: AccountPoll,
        started_at: datetime,
        error: Exception,
        outcome: PollOutcome,
    ) -> None:
        kind, reason = _failure(error, default=FailureKind.ASSUME_ROLE_FAILED)
        log.warning("poll_failed", kind=kind, reason=reason)
        await self._outbox.discovery_failed(
            DiscoveryFailed(
                task_id=poll.task_id,
                account_id=poll.account_id,
                regions=poll.regions,
                kind=kind,
                reason=reason,
                discovery_started_at=started_at,
                failed_at=self._clock(),
            )
        )
        outcome.failed.update(dict.fromkeys(poll.regions, kind))

    async def _discover_regions(
        self, poll: AccountPoll, account: AccountSession, outcome: PollOutcome
    ) -> None:
        slots = asyncio.Semaphore(self._limits.region_concurrency)

        async def one(region: str) -> None:
            async with slots:
                await self._discover_region(poll, account, region, outcome)

        async with asyncio.TaskGroup() as group:
            for region in dict.fromkeys(poll.regions):
                group.create_task(one(region))

    async def _discover_region(
        self,
        poll: AccountPoll,
        account: AccountSession,
        region: str,
        outcome: PollOutcome,
    ) -> None:
        structlog.contextvars.bind_contextvars(region=region)
        started = time.monotonic()
        started_at = self._clock()
        cancelled = threading.Event()
        try:
            snapshot, stats = await self._in_thread(
                self._limits.region_timeout_seconds,
                functools.partial(
                    self._aws.discover_region,
                    account,
                    region,
                    calls_per_second=self._limits.calls_per_second,
                    cancelled=cancelled,
                ),
                cancelled=cancelled,
            )
        except Exception as error:
            kind, reason = _failure(error, default=FailureKind.OTHER)
            log.warning("region_failed", kind=kind, reason=reason)
            await self._outbox.discovery_failed(
                DiscoveryFailed(
                    task_id=poll.task_id,
                    account_id=poll.account_id,
                    region=region,
                    regions=[region],
                    kind=kind,
                    reason=reason,
                    discovery_started_at=started_at,
                    failed_at=self._clock(),
                )
            )
            outcome.failed[region] = kind
            return

        await self._outbox.region_discovered(
            poll, region, started_at, self._clock(), snapshot
        )
        outcome.discovered.append(region)
        log.info(
            "region_discovered",
            vpcs=len(snapshot.vpcs),
            subnets=len(snapshot.subnets),
            security_groups=len(snapshot.security_groups),
            rules=sum(len(group.rules) for group in snapshot.security_groups),
            enis=len(snapshot.enis),
            instances=len(snapshot.instances),
            calls=stats.calls,
            requests=stats.requests,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _in_thread(
        self,
        seconds: float,
        function: Callable[..., T],
        *args: object,
        cancelled: threading.Event | None = None,
    ) -> T:
        """Run blocking boto3 work in a thread, with the caller's log context.

        The `seconds` run from when a thread takes the work: a thread may be
        held a while by a call of a region that timed out already (until
        botocore's read timeout), and waiting for it is not this work's fault.
        On timeout or cancellation the thread is told to stop at its next call.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        taken = asyncio.Event()

        def run() -> T:
            loop.call_soon_threadsafe(taken.set)
            return context.run(function, *args)

        future = loop.run_in_executor(self._executor, run)
        waiting = asyncio.ensure_future(taken.wait())
        try:
            # Taken, or over at once (an executor already shut down).
            future.add_done_callback(lambda _: taken.set())
            await waiting
            return await asyncio.wait_for(future, seconds)
        except TimeoutError:
            raise DiscoveryError(
                FailureKind.TIMEOUT, f"no answer within {seconds:g} s"
            ) from None
        finally:
            waiting.cancel()
            future.cancel()  # work still queued never starts
            if cancelled is not None:
                cancelled.set()


def _failure(error: Exception, default: FailureKind) -> tuple[FailureKind, str]:
    """Kind and reason of a failure; an unexpected error is logged with its trace."""
    if isinstance(error, DiscoveryError):
        return error.kind, error.reason
    log.error("discovery_error", exc_info=error)
    return default, f"{type(error).__name__}: {error}"[:4000]
