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
from nats.errors import Error as NatsError
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
        fetch_timeout: float = 2.0,
    ) -> None:
        self._js = js
        self._names = names
        self._poller = poller
        self._slots = asyncio.Semaphore(slots)
        self._heartbeat = max(0.2, ack_wait_seconds / 4)
        self._fetch_timeout = fetch_timeout
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and run polls until `stop` is set; running polls are then nak'ed.

        A fetch is never abandoned half-way: a pull request left on the server
        would catch a nak'ed poll for a connection that is going away.
        """
        subscription = await self._js.pull_subscribe_bind(
            durable=self._names.poller_consumer, stream=self._names.polls_stream
        )
        log.info("poller_consuming", stream=self._names.polls_stream)
        try:
            while await self._slot_free(stop):
                messages = await self._fetch(subscription)
                if stop.is_set():
                    for message in messages:
                        await message.nak()
                    self._slots.release()
                    break
                if not messages:
                    self._slots.release()
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

    async def _slot_free(self, stop: asyncio.Event) -> bool:
        """Wait for a free local slot; False when `stop` came first."""
        if stop.is_set():
            return False
        acquire = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquire.done():
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
        if acquire.done() and not acquire.cancelled() and stop.is_set():
            self._slots.release()
            return False
        return not stop.is_set()

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription
    ) -> list[Msg]:
        try:
            return await subscription.fetch(1, self._fetch_timeout)
        except TimeoutError:  # nats-py raises its own subclass, or asyncio's
            return []
        except NatsError as error:
            # Reconnecting, or the consumer is briefly unavailable: try again.
            log.warning("fetch_failed", error=str(error) or repr(error))
            await asyncio.sleep(1)
            return []

    async def _run_one(self, message: Msg) -> None:
        try:
            await self.handle(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # JetStream redelivers what was not acknowledged; nothing is lost.
            log.exception("poll_not_settled")
        finally:
            self._slots.release()

    async def handle(self, message: Msg) -> None:
        """Run one poll; ack it when all is published, nak it when not."""
        structlog.contextvars.clear_contextvars()
        try:
            poll = AccountPoll.model_validate_json(message.data)
        except ValidationError as error:
            # Field names and messages only: the input may hold an external id.
            problems = [
                f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
                for problem in error.errors(include_input=False)
            ]
            log.error(
                "poll_rejected", reason="; ".join(problems), size=len(message.data)
            )
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
