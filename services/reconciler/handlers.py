"""Message handlers: decode, bind log context, call the service, decide the fate.

A discovery message is acknowledged only after its transaction committed and
its `tasks.finished` events were published. A payload that does not parse is
terminated (never redelivered) with the reason logged; a transient fault
(database or NATS unreachable, deadlock) is redelivered with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from services.reconciler import accounts, discovery
from services.reconciler.discovery import Outcome
from shared import snapshots
from shared.bus import BusNames
from shared.events import (
    CommandReply,
    CreateAccount,
    CreateApiToken,
    DeleteAccount,
    DiscoveryFailed,
    ErrorCode,
    FailureKind,
    RegionSnapshot,
    RemoveAccountRegion,
    ResourcesDiscovered,
    RevokeApiToken,
    TaskCreated,
    TaskFinished,
    TasksCreated,
    TaskStarted,
    TaskStatus,
    UpdateAccount,
)

log = structlog.get_logger(__name__)

TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    NatsError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Whole SQLSTATE classes of conditions the server is in, not of the data:
    # 40 (deadlock, serialization), 53 (disk full, out of memory, too many
    # connections), 57 (cancelled statement, shutdown, restart), 58 (I/O).
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresSystemError,
    asyncpg.LockNotAvailableError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby, during a failover
)
"""Faults worth a redelivery: the same message will likely succeed later."""

MAX_REDELIVERY_DELAY = 60.0
MAX_UNEXPECTED_ATTEMPTS = 5
"""Deliveries of a message failing in an unexpected way before giving up on it."""

M = TypeVar("M", bound=BaseModel)


@dataclass
class Deps:
    """What the handlers need, made once by the bootstrap."""

    pool: asyncpg.Pool
    nc: NatsClient
    js: JetStreamContext
    names: BusNames
    heartbeat_seconds: float = 20.0


PUBLISH_TIMEOUT_SECONDS = 30.0
"""Longest wait for JetStream to acknowledge one message's final statuses."""


async def publish_finished(deps: Deps, finished: list[TaskFinished]) -> None:
    """Publish final task statuses; the message id makes a republish harmless.

    Pipelined: a batch of skipped children or a timeout sweep may finish
    hundreds of tasks at once, and one round trip each would hold the message.
    """
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        acks = [
            await deps.js.publish_async(
                deps.names.tasks_finished,
                event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": f"{event.task_id}.finished"},
            )
            for event in finished
        ]
        await asyncio.gather(*acks)
    for event in finished:
        log.info(
            "task_finished",
            task_id=str(event.task_id),
            status=event.status.value,
            parent_task_id=str(event.parent_task_id) if event.parent_task_id else None,
        )


async def _heartbeat(msg: Msg, seconds: float) -> None:
    """Tell JetStream a long apply is still working, so it is not redelivered."""
    while True:
        await asyncio.sleep(seconds)
        with contextlib.suppress(NatsError):
            await msg.in_progress()


async def handle_discovery_message(deps: Deps, msg: Msg) -> None:
    """Handle one message of the discovery stream and decide its fate."""
    names = deps.names
    routes: dict[str, Callable[[Deps, bytes], Awaitable[Outcome]]] = {
        names.resources_discovered: _on_discovered,
        names.discovery_failed: _on_failed,
        names.tasks_created: _on_created,
        names.tasks_created_batch: _on_created_batch,
        names.tasks_started: _on_started,
    }
    route = routes.get(msg.subject)
    delivered = msg.metadata.num_delivered or 1
    structlog.contextvars.bind_contextvars(
        subject=msg.subject, stream_seq=msg.metadata.sequence.stream
    )
    if route is None:
        log.error("message_terminated", reason="unknown subject")
        await msg.term()
        return
    beat = asyncio.create_task(_heartbeat(msg, deps.heartbeat_seconds))
    try:
        outcome = await route(deps, msg.data)
    except ValidationError as error:
        refusal = _refusal(deps, msg, error)
        if refusal is None:
            log.error("message_terminated", reason="invalid payload", error=str(error))
            await msg.term()
            return
        log.error("snapshot_refused", error=str(error))
        refused = await _fail_snapshot_region(deps, msg, refusal)
        if refused is None:
            return
        outcome = refused
    except TRANSIENT as error:
        await _redeliver_later(msg, error)
        return
    except asyncpg.PostgresError:
        # The same data would fail again: record it where operators look.
        log.error("message_rejected_by_database", exc_info=True)
        rejected = await _reject(deps, msg)
        if rejected is None:
            return
        outcome = rejected
    except Exception:
        if delivered < MAX_UNEXPECTED_ATTEMPTS:
            log.error("message_failed", delivered=delivered, exc_info=True)
            await msg.nak(delay=min(MAX_REDELIVERY_DELAY, 2.0**delivered))
            return
        log.error("message_given_up", delivered=delivered, exc_info=True)
        rejected = await _reject(deps, msg)
        if rejected is None:
            return
        outcome = rejected
    finally:
        beat.cancel()
    await publish_finished(deps, outcome.finished)
    await msg.ack()


async def _redeliver_later(msg: Msg, error: BaseException) -> None:
    """Negatively acknowledge, with a delay growing with each delivery."""
    delay = min(MAX_REDELIVERY_DELAY, 2.0 ** (msg.metadata.num_delivered or 1))
    log.warning("message_redelivered", reason=repr(error), delay=delay)
    await msg.nak(delay=delay)


def _refusal(deps: Deps, msg: Msg, error: ValidationError) -> DiscoveryFailed | None:
    """The failure of the region of a snapshot that is not one, if it says whose.

    Its task would otherwise wait for that region's outcome until it times out.
    None when the message does not even name a task, an account and a region.
    """
    if msg.subject != deps.names.resources_discovered:
        return None
    try:
        named = json.loads(msg.data)
        now = datetime.now(UTC)
        return DiscoveryFailed(
            task_id=named["task_id"],
            account_id=named["account_id"],
            region=named["region"],
            kind=FailureKind.OTHER,
            reason=f"the snapshot was refused: {_first_problem(error)}",
            discovery_started_at=now,
            failed_at=now,
        )
    except (ValueError, TypeError, KeyError):
        return None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "the message"
    return f"{where}: {problem['msg']} ({error.error_count()} problem(s) in all)"


async def _reject(deps: Deps, msg: Msg) -> Outcome | None:
    """Give up on a message without losing sight of it.

    A snapshot fails its region, recorded on its task (the message is then
    acknowledged); any other message is terminated and None returned.
    """
    if msg.subject != deps.names.resources_discovered:
        await msg.term()
        return None
    event = ResourcesDiscovered.model_validate_json(msg.data)  # it parsed before
    failure = DiscoveryFailed(
        task_id=event.task_id,
        account_id=event.account_id,
        region=event.region,
        kind=FailureKind.OTHER,
        reason="the snapshot could not be applied (see the reconciler's log)",
        discovery_started_at=event.discovery_started_at,
        failed_at=event.discovery_finished_at,
    )
    return await _fail_snapshot_region(deps, msg, failure)


async def _fail_snapshot_region(
    deps: Deps, msg: Msg, failure: DiscoveryFailed
) -> Outcome | None:
    """Record the failure of a snapshot given up on; None once `msg` is settled.

    A transient fault redelivers the message; any other leaves nothing to try,
    so it is terminated rather than looped.
    """
    try:
        return await discovery.record_failure(deps.pool, failure)
    except TRANSIENT as error:
        await _redeliver_later(msg, error)
    except Exception:
        log.error("message_terminated", reason="failure not recordable", exc_info=True)
        await msg.term()
    return None


def _bind(task_id: object, account_id: str, region: str | None = None) -> None:
    structlog.contextvars.bind_contextvars(
        task_id=str(task_id), account_id=account_id, region=region
    )


async def _on_discovered(deps: Deps, data: bytes) -> Outcome:
    event = ResourcesDiscovered.model_validate_json(data)
    _bind(event.task_id, event.account_id, event.region)
    snapshot, load_error = await _load_snapshot(deps, event)

    outcome = await discovery.apply_discovered(deps.pool, event, snapshot, load_error)

    if event.snapshot_ref is not None and outcome.status != "failed":
        await snapshots.discard(deps.js, deps.names, event.snapshot_ref)
    _log_outcome("snapshot_applied", event, snapshot, outcome)
    return outcome


def _log_outcome(
    name: str,
    event: ResourcesDiscovered,
    snapshot: RegionSnapshot | None,
    outcome: Outcome,
) -> None:
    fields = outcome.summary()
    if snapshot is not None:
        fields["enis"] = len(snapshot.enis)
        fields["instances"] = len(snapshot.instances)
    if outcome.status == "applied":
        log.info(name, **fields)
    else:
        log.warning("snapshot_not_applied", **fields)


async def _load_snapshot(
    deps: Deps, event: ResourcesDiscovered
) -> tuple[RegionSnapshot | None, str | None]:
    if event.snapshot is not None:
        return event.snapshot, None
    assert event.snapshot_ref is not None
    try:
        return await snapshots.load(deps.js, deps.names, event.snapshot_ref), None
    except (snapshots.SnapshotMissing, snapshots.SnapshotCorrupted) as error:
        return None, f"{type(error).__name__}: {error}"


async def _on_failed(deps: Deps, data: bytes) -> Outcome:
    event = DiscoveryFailed.model_validate_json(data)
    _bind(event.task_id, event.account_id, event.region)

    outcome = await discovery.record_failure(deps.pool, event)

    log.warning(
        "discovery_failed_recorded",
        kind=event.kind.value,
        reason=event.reason,
        regions=event.regions or None,
    )
    return outcome


async def _on_created(deps: Deps, data: bytes) -> Outcome:
    event = TaskCreated.model_validate_json(data)
    structlog.contextvars.bind_contextvars(
        task_id=str(event.task_id), account_id=event.account_id
    )

    outcome = await discovery.record_created(deps.pool, event)

    log.debug("task_created_recorded", kind=event.kind.value, status=event.status)
    return outcome


async def _on_created_batch(deps: Deps, data: bytes) -> Outcome:
    batch = TasksCreated.model_validate_json(data)
    structlog.contextvars.bind_contextvars(
        cycle_id=batch.cycle_id, parent_task_id=str(batch.parent_task_id)
    )

    outcome = await discovery.record_created_batch(deps.pool, batch)

    log.info(
        "task_batch_recorded",
        first=batch.first,
        tasks=len(batch.tasks),
        skipped=sum(1 for task in batch.tasks if task.status is TaskStatus.SKIPPED),
        finished=len(outcome.finished),
    )
    return outcome


async def _on_started(deps: Deps, data: bytes) -> Outcome:
    event = TaskStarted.model_validate_json(data)
    _bind(event.task_id, event.account_id)

    outcome = await discovery.record_started(deps.pool, event)

    log.debug("task_started_recorded", attempt=event.attempt)
    return outcome


def command_handler(
    deps: Deps,
    model: type[M],
    action: Callable[[asyncpg.Pool, M], Awaitable[CommandReply]],
) -> Callable[[Msg], Awaitable[None]]:
    """A request-reply handler answering once the command's effect is committed."""

    async def handle(msg: Msg) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(subject=msg.subject)
        reply = await _run_command(deps, model, action, msg.data)
        fields: dict[str, Any] = {"ok": reply.ok}
        if not reply.ok:
            fields.update(error_code=reply.error_code, error=reply.error)
        log.info("command_answered", **fields)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    return handle


async def _run_command(
    deps: Deps,
    model: type[M],
    action: Callable[[asyncpg.Pool, M], Awaitable[CommandReply]],
    data: bytes,
) -> CommandReply:
    try:
        command = model.model_validate_json(data)
    except ValidationError as error:
        return CommandReply(ok=False, error_code=ErrorCode.INVALID, error=str(error))
    try:
        return await action(deps.pool, command)
    except TRANSIENT as error:
        log.warning("command_unavailable", error=repr(error))
        return CommandReply(
            ok=False, error_code=ErrorCode.UNAVAILABLE, error="try again later"
        )
    except asyncpg.PostgresError as error:
        log.error("command_failed", exc_info=True)
        return CommandReply(
            ok=False, error_code=ErrorCode.INVALID, error=type(error).__name__
        )
    except Exception:
        # Answer anyway: a silent reconciler would leave the API waiting.
        log.error("command_failed", exc_info=True)
        return CommandReply(
            ok=False,
            error_code=ErrorCode.UNAVAILABLE,
            error="the reconciler failed on this command (see its log);"
            " the change may or may not have been made",
        )


def command_routes(
    names: BusNames,
) -> list[tuple[str, type[BaseModel], Callable[..., Awaitable[CommandReply]]]]:
    """Each command subject, its contract and the function that carries it out."""
    return [
        (names.accounts_create, CreateAccount, accounts.create_account),
        (names.accounts_update, UpdateAccount, accounts.update_account),
        (names.accounts_delete, DeleteAccount, accounts.delete_account),
        (names.accounts_remove_region, RemoveAccountRegion, accounts.remove_region),
        (names.tokens_create, CreateApiToken, accounts.create_token),
        (names.tokens_revoke, RevokeApiToken, accounts.revoke_token),
    ]
