"""Bus adapter: a poll's events, published to JetStream with deduplication ids.

An event's `Nats-Msg-Id` is made of what identifies its content (task,
region, the time discovery started), so publishing it again after a lost
acknowledgement is deduplicated by JetStream, while a re-poll after a
redelivery (a new start time) publishes a new, newer snapshot.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from shared import snapshots
from shared.bus import BusNames
from shared.events import (
    AccountPoll,
    Contract,
    DiscoveryFailed,
    RegionSnapshot,
    ResourcesDiscovered,
    SnapshotRef,
    TaskStarted,
)

log = structlog.get_logger(__name__)

PUBLISH_ATTEMPTS = 3
PUBLISH_TIMEOUT = 10.0


class JetStreamOutbox:
    """Publishes into the discovery stream; returns once JetStream stored it."""

    def __init__(self, js: JetStreamContext, names: BusNames) -> None:
        self._js = js
        self._names = names

    async def task_started(self, event: TaskStarted) -> None:
        await self._publish(
            self._names.tasks_started,
            event,
            f"started:{event.task_id}:{event.attempt}",
        )

    async def region_discovered(
        self,
        poll: AccountPoll,
        region: str,
        started_at: datetime,
        finished_at: datetime,
        snapshot: RegionSnapshot,
    ) -> None:
        # One object per attempt: a later attempt never overwrites the object
        # an earlier attempt's event still refers to.
        body = await snapshots.store(
            self._js,
            self._names,
            f"{poll.task_id}/{region}/{started_at.isoformat()}",
            snapshot,
        )
        event = ResourcesDiscovered(
            task_id=poll.task_id,
            account_id=poll.account_id,
            region=region,
            discovery_started_at=started_at,
            discovery_finished_at=finished_at,
            snapshot=body if isinstance(body, RegionSnapshot) else None,
            snapshot_ref=body if isinstance(body, SnapshotRef) else None,
        )
        await self._publish(
            self._names.resources_discovered,
            event,
            f"discovered:{poll.task_id}:{region}:{started_at.isoformat()}",
        )

    async def discovery_failed(self, event: DiscoveryFailed) -> None:
        scope = event.region or "*"
        await self._publish(
            self._names.discovery_failed,
            event,
            f"failed:{event.task_id}:{scope}:{event.discovery_started_at.isoformat()}",
        )

    async def _publish(self, subject: str, event: Contract, msg_id: str) -> None:
        payload = event.model_dump_json().encode()
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await self._js.publish(
                    subject,
                    payload,
                    timeout=PUBLISH_TIMEOUT,
                    headers={"Nats-Msg-Id": msg_id},
                )
                return
            except (NatsTimeoutError, NoStreamResponseError) as error:
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                log.warning(
                    "publish_retried",
                    subject=subject,
                    attempt=attempt,
                    error=str(error),
                )
                await asyncio.sleep(attempt)
