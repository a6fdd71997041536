"""Writes: commands sent over NATS request-reply, answered once committed."""

from __future__ import annotations

import json

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from pydantic import ValidationError

from services.api.errors import ApiError, ErrorCode
from services.api.schemas import Accepted
from shared.events import CommandReply, Contract
from shared.events import ErrorCode as ReplyCode

log = structlog.get_logger(__name__)

_STATUS = {
    ReplyCode.NOT_FOUND: (404, ErrorCode.NOT_FOUND),
    ReplyCode.CONFLICT: (409, ErrorCode.CONFLICT),
    ReplyCode.INVALID: (422, ErrorCode.INVALID),
    ReplyCode.UNAVAILABLE: (503, ErrorCode.UNAVAILABLE),
}


class CommandSender:
    """Sends a command and turns its `CommandReply` into a result or an `ApiError`."""

    def __init__(self, nats: NatsClient, timeout_seconds: float) -> None:
        self._nats = nats
        self._timeout = timeout_seconds

    async def send(self, subject: str, command: Contract) -> CommandReply:
        # Only the fields that were set travel: `accounts.update` clears exactly
        # the fields sent as null and keeps those left out.
        body = command.model_dump(mode="json", exclude_unset=True)
        body["schema_version"] = command.schema_version
        payload = json.dumps(body).encode()
        try:
            message = await self._nats.request(subject, payload, timeout=self._timeout)
        except NoRespondersError:
            log.warning("command_unanswered", subject=subject, error="no responders")
            raise ApiError(
                503,
                ErrorCode.UNAVAILABLE,
                f"nothing answers {subject} (is the service that commits it"
                " running?); the change was not made",
            ) from None
        except (NatsError, TimeoutError) as error:
            # No answer in time, or no connection: the outcome is unknown.
            log.warning(
                "command_unanswered", subject=subject, error=type(error).__name__
            )
            raise ApiError(
                503,
                ErrorCode.UNAVAILABLE,
                f"no answer to {subject} within {self._timeout:g} s; "
                "the change may or may not have been made",
            ) from None

        try:
            reply = CommandReply.model_validate_json(message.data)
        except ValidationError:
            log.error("command_reply_malformed", subject=subject)
            raise ApiError(
                503, ErrorCode.UNAVAILABLE, f"malformed answer to {subject}"
            ) from None
        if not reply.ok:
            status, code = _STATUS.get(
                reply.error_code or ReplyCode.UNAVAILABLE,
                _STATUS[ReplyCode.UNAVAILABLE],
            )
            raise ApiError(status, code, reply.error or f"{subject} refused")

        log.info("command_answered", subject=subject)
        return reply


def accepted(reply: CommandReply) -> Accepted:
    """The 202 answer to work that was queued; it must name its task."""
    if reply.task_id is None:
        raise ApiError(503, ErrorCode.UNAVAILABLE, "work accepted without a task id")
    return Accepted(task_id=reply.task_id)
