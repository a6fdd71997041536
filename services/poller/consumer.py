"""Bus handler: pull `account.poll` from the shared durable consumer and run it.

The consumer's `max_ack_pending` is the cap on polls running at once across
every replica, so a message is acknowledged only when everything of its poll
is published. While a poll runs, JetStream is told it is still in progress;
a poller that dies mid-poll stops saying so and the poll is redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from pydantic import ValidationError

from services.poller.service import Poller
from shared.bus import BusNames
from shared.events import AccountPoll

log = structlog.get_logger(__name__)

RETRY_DELAY_SECONDS = 15.0
"""How long JetStream waits before redelivering a poll whose events did not go out."""


class PollConsumer:
    """Takes polls from JetStream as long as a local slot is free."""

    def __init__(
        self,
        js: JetStreamContext,
        names: BusNames,
        poller: Poller,
        *,
        slots: int,
        ack_wait_seconds: float,
        fetch_timeout: float = 5.0,
    ) -> None:
        self._js = js
        self._names = names
        self._poller = poller
        self._slots = asyncio.Semaphore(slots)
        self._heartbeat = max(0.2, ack_wait_seconds / 4)
        self._fetch_timeout = fetch_timeout
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and run polls until `stop` is set; running polls are then nak'ed."""
        subscription = await self._js.pull_subscribe_bind(
            durable=self._names.poller_consumer, stream=self._names.polls_stream
        )
        log.info("poller_consuming", stream=self._names.polls_stream)
        try:
            while not stop.is_set():
                await self._slots.acquire()
                messages = await self._fetch(subscription, stop)
                if not messages:
                    self._slots.release()
                    continue
                for message in messages:
                    task = asyncio.create_task(self._run_one(message))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription, stop: asyncio.Event
    ) -> list[Msg]:
        fetch = asyncio.ensure_future(subscription.fetch(1, self._fetch_timeout))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, NatsTimeoutError):
                await fetch
            return []
        try:
            return fetch.result()
        except NatsTimeoutError:
            return []

    async def _run_one(self, message: Msg) -> None:
        try:
            await self.handle(message)
        finally:
            self._slots.release()

    async def handle(self, message: Msg) -> None:
        """Run one poll; ack it when all is published, nak it when not."""
        structlog.contextvars.clear_contextvars()
        try:
            poll = AccountPoll.model_validate_json(message.data)
        except ValidationError as error:
            log.error("poll_rejected", reason=str(error), data=message.data[:500])
            await message.term()
            return

        attempt = message.metadata.num_delivered or 1
        structlog.contextvars.bind_contextvars(
            task_id=str(poll.task_id), account_id=poll.account_id
        )
        log.info("poll_received", attempt=attempt, regions=poll.regions)
        heartbeat = asyncio.create_task(self._keep_alive(message))
        try:
            await self._poller.poll(poll, attempt=attempt)
        except asyncio.CancelledError:
            log.warning("poll_interrupted", reason="poller stopping; redelivered")
            with contextlib.suppress(Exception):
                await message.nak()
            raise
        except Exception:
            log.exception("poll_not_published", retry_in=RETRY_DELAY_SECONDS)
            await message.nak(delay=RETRY_DELAY_SECONDS)
        else:
            await message.ack_sync(timeout=10)
        finally:
            heartbeat.cancel()

    async def _keep_alive(self, message: Msg) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await message.in_progress()
            except Exception as error:
                log.warning("in_progress_not_sent", error=str(error))
