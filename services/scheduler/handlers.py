"""Operators' commands over NATS request-reply: parse, call the scheduler, reply."""

from __future__ import annotations

import structlog
from faststream.nats import NatsBroker, NatsMessage
from pydantic import ValidationError

from services.scheduler.planning import CycleKind
from services.scheduler.service import CommandRejected, Scheduler
from shared.bus import BusNames
from shared.events import CommandReply, ErrorCode, PollAccountNow, StartCycle

log = structlog.get_logger(__name__)

QUEUE_GROUP = "scheduler"
"""One replica answers each command."""


def register_handlers(
    broker: NatsBroker, names: BusNames, scheduler: Scheduler
) -> None:
    """Subscribe the command handlers of `scheduler` on `broker`."""

    @broker.subscriber(names.scheduler_start_cycle, queue=QUEUE_GROUP)
    async def start_cycle(message: NatsMessage) -> CommandReply:
        try:
            command = StartCycle.model_validate_json(message.body)
        except ValidationError as error:
            return _malformed("start_cycle", error)
        structlog.contextvars.bind_contextvars(requested_by=command.requested_by)

        try:
            plan = await scheduler.start_cycle(CycleKind.MANUAL, command.requested_by)
        except CommandRejected as rejected:
            return _rejected("start_cycle", rejected)
        except Exception as error:
            return _failed("start_cycle", error)

        log.info("command_done", command="start_cycle", cycle_id=plan.cycle_id)
        return CommandReply(ok=True, task_id=plan.parent_task_id)

    @broker.subscriber(names.scheduler_poll_account, queue=QUEUE_GROUP)
    async def poll_account(message: NatsMessage) -> CommandReply:
        try:
            command = PollAccountNow.model_validate_json(message.body)
        except ValidationError as error:
            return _malformed("poll_account", error)
        structlog.contextvars.bind_contextvars(
            account_id=command.account_id, requested_by=command.requested_by
        )

        try:
            task_id = await scheduler.poll_account(
                command.account_id, command.requested_by
            )
        except CommandRejected as rejected:
            return _rejected("poll_account", rejected)
        except Exception as error:
            return _failed("poll_account", error)

        log.info("command_done", command="poll_account", task_id=str(task_id))
        return CommandReply(ok=True, task_id=task_id)


def _malformed(command: str, error: ValidationError) -> CommandReply:
    reason = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in error.errors()
    )
    log.warning("command_rejected", command=command, reason=reason)
    return CommandReply(ok=False, error_code=ErrorCode.INVALID, error=reason)


def _rejected(command: str, rejected: CommandRejected) -> CommandReply:
    log.warning(
        "command_rejected", command=command, code=rejected.code, reason=str(rejected)
    )
    return CommandReply(
        ok=False, error_code=ErrorCode(rejected.code), error=str(rejected)
    )


def _failed(command: str, error: Exception) -> CommandReply:
    log.exception("command_failed", command=command)
    return CommandReply(
        ok=False, error_code=ErrorCode.UNAVAILABLE, error=f"scheduler failed: {error!r}"
    )
