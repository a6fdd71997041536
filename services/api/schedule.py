"""The schedule as the scheduler wrote it, and the poll queue, read from JetStream."""

from __future__ import annotations

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import ValidationError

from services.api.schemas import PollQueue, ScheduleOut
from shared.bus import BusNames
from shared.events import ScheduleState

log = structlog.get_logger(__name__)

SCHEDULE_KEY = "schedule"


async def read_schedule(js: JetStreamContext, names: BusNames) -> ScheduleOut:
    """Missing bucket, key or consumer is reported as such, never as an error."""
    state = await _state(js, names)
    return ScheduleOut(
        available=state is not None, state=state, poll_queue=await _queue(js, names)
    )


async def _state(js: JetStreamContext, names: BusNames) -> ScheduleState | None:
    try:
        bucket = await js.key_value(names.scheduler_bucket)
        entry = await bucket.get(SCHEDULE_KEY)
    except (NatsError, TimeoutError) as error:
        log.debug("schedule_unavailable", error=type(error).__name__)
        return None
    if not entry.value:
        return None
    try:
        return ScheduleState.model_validate_json(entry.value)
    except ValidationError:
        log.warning("schedule_state_malformed")
        return None


async def _queue(js: JetStreamContext, names: BusNames) -> PollQueue:
    try:
        info = await js.consumer_info(names.polls_stream, names.poller_consumer)
    except (NatsError, TimeoutError) as error:
        log.debug("poll_queue_unknown", error=type(error).__name__)
        return PollQueue(known=False, pending=None, running=None)
    return PollQueue(known=True, pending=info.num_pending, running=info.num_ack_pending)
