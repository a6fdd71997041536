"""Real NATS: the shared consumer caps polls across replicas; events are published."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.poller.aws import RegionStats
from services.poller.consumer import PollConsumer
from services.poller.outbox import JetStreamOutbox
from services.poller.service import Poller, PollLimits
from shared.bus import BusNames, ensure_poller_consumer
from shared.events import (
    AccountPoll,
    Eni,
    FailureKind,
    RegionSnapshot,
)
from tests.poller.fakes import collect, poll_for, publish_polls


class SlowAws:
    """An AWS that takes a while per region and fails the regions it is told to."""

    def __init__(self, seconds: float, failing: frozenset[str] = frozenset()) -> None:
        self.seconds = seconds
        self.failing = failing

    def open_account(self, poll: AccountPoll) -> Any:
        return poll.account_id

    def discover_region(
        self, account: Any, region: str, *, calls_per_second: float, cancelled: Any
    ) -> tuple[RegionSnapshot, RegionStats]:
        from services.poller.aws import DiscoveryError

        if cancelled.wait(self.seconds):
            raise DiscoveryError(FailureKind.TIMEOUT, "cancelled")
        if region in self.failing:
            raise DiscoveryError(FailureKind.ACCESS_DENIED, "UnauthorizedOperation")
        eni = Eni(eni_id=f"eni-{account}", owner_id=account)
        return RegionSnapshot(enis=[eni]), RegionStats()


class Gauge:
    """Wraps a poller to count the polls running at once, across replicas."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.done = 0
        self._lock = threading.Lock()

    def wrap(self, poller: Poller) -> Any:
        gauge = self

        class Counted:
            async def poll(self, poll: AccountPoll, attempt: int = 1) -> Any:
                with gauge._lock:
                    gauge.running += 1
                    gauge.peak = max(gauge.peak, gauge.running)
                try:
                    return await poller.poll(poll, attempt)
                finally:
                    with gauge._lock:
                        gauge.running -= 1
                        gauge.done += 1

        return Counted()


@contextlib.asynccontextmanager
async def replica(
    nats_url: str,
    names: BusNames,
    aws: Any,
    gauge: Gauge | None = None,
    slots: int = 2,
    ack_wait_seconds: float = 30,
) -> AsyncIterator[None]:
    """One poller replica with its own NATS connection, running until the block ends."""
    client = await nats.connect(nats_url)
    js = client.jetstream()
    stop = asyncio.Event()
    with ThreadPoolExecutor(8) as executor:
        poller: Any = Poller(
            aws, JetStreamOutbox(js, names), PollLimits(region_concurrency=2), executor
        )
        if gauge is not None:
            poller = gauge.wrap(poller)
        consumer = PollConsumer(
            js,
            names,
            poller,
            slots=slots,
            ack_wait_seconds=ack_wait_seconds,
            fetch_timeout=1,
        )
        task = asyncio.create_task(consumer.run(stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await client.drain()


@pytest.fixture
async def js(nats_client: NatsClient, names: BusNames) -> JetStreamContext:
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, max_concurrent=2)
    return js


async def test_no_more_than_the_cap_run_at_once_when_two_replicas_share_it(
    js: JetStreamContext, names: BusNames, nats_url: str
) -> None:
    gauge = Gauge()
    polls = [poll_for(f"{n:012d}", ["us-east-1", "eu-west-1"]) for n in range(1, 7)]
    await publish_polls(js, names, polls)

    async with (
        replica(nats_url, names, SlowAws(0.4), gauge),
        replica(nats_url, names, SlowAws(0.4), gauge),
    ):
        events = await collect(
            js,
            names,
            lambda e: len(e[names.resources_discovered]) == 12 and gauge.done == 6,
        )

    assert gauge.peak == 2
    assert gauge.done == 6
    assert len(events[names.tasks_started]) == 6
    discovered = events[names.resources_discovered]
    assert {(e.account_id, e.region) for e in discovered} == {
        (p.account_id, r) for p in polls for r in p.regions
    }
    assert all(e.discovery_started_at <= e.discovery_finished_at for e in discovered)
    assert all(e.snapshot is not None for e in discovered)


async def test_failed_region_and_discovered_region_are_both_published(
    js: JetStreamContext, names: BusNames, nats_url: str
) -> None:
    poll = poll_for("123412341234", ["us-east-1", "ap-south-1"])
    await publish_polls(js, names, [poll])

    async with replica(nats_url, names, SlowAws(0.1, frozenset({"ap-south-1"}))):
        events = await collect(
            js,
            names,
            lambda e: e[names.resources_discovered] and e[names.discovery_failed],
        )

    [failed] = events[names.discovery_failed]
    [found] = events[names.resources_discovered]
    assert (failed.region, failed.kind) == ("ap-south-1", FailureKind.ACCESS_DENIED)
    assert found.region == "us-east-1"
    assert found.snapshot is not None and found.snapshot.enis[0].owner_id == (
        "123412341234"
    )


async def test_large_snapshot_goes_through_the_object_store_when_over_the_limit(
    js: JetStreamContext, names: BusNames
) -> None:
    from shared import snapshots

    poll = poll_for("123412341234", ["us-east-1"])
    big = RegionSnapshot(
        enis=[Eni(eni_id=f"eni-{n:017x}", owner_id="123412341234") for n in range(5000)]
    )
    outbox = JetStreamOutbox(js, names)

    started = poll.requested_at
    await outbox.region_discovered(poll, "us-east-1", started, started, big)
    await outbox.region_discovered(poll, "us-east-1", started, started, big)
    events = await collect(js, names, lambda e: e[names.resources_discovered], 5)

    [event] = events[names.resources_discovered]
    assert event.snapshot is None and event.snapshot_ref is not None
    assert await snapshots.load(js, names, event.snapshot_ref) == big


async def test_malformed_poll_is_terminated_when_it_cannot_be_read(
    js: JetStreamContext, names: BusNames, nats_url: str
) -> None:
    good = poll_for("123412341234", ["us-east-1"])
    await js.publish(names.account_poll, b'{"task_id": "not a uuid"}')
    await publish_polls(js, names, [good])

    async with replica(nats_url, names, SlowAws(0)):
        events = await collect(js, names, lambda e: e[names.resources_discovered])
        await asyncio.sleep(0.5)
        info = await js.consumer_info(names.polls_stream, names.poller_consumer)

    assert [e.task_id for e in events[names.resources_discovered]] == [good.task_id]
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert info.num_redelivered == 0


async def test_interrupted_poll_is_delivered_again_when_its_replica_stops(
    js: JetStreamContext, names: BusNames, nats_url: str
) -> None:
    poll = poll_for("123412341234", ["us-east-1"], task_id=uuid.uuid4())
    await publish_polls(js, names, [poll])

    async with replica(nats_url, names, SlowAws(30)):
        await collect(js, names, lambda e: e[names.tasks_started], 10)
    async with replica(nats_url, names, SlowAws(0.1)):
        events = await collect(js, names, lambda e: e[names.resources_discovered])

    print(events)
    [started] = events[names.tasks_started]
    [found] = events[names.resources_discovered]
    assert (started.task_id, started.attempt) == (poll.task_id, 2)
    assert found.task_id == poll.task_id
    assert timedelta(0) <= found.discovery_finished_at - found.discovery_started_at


async def test_long_poll_is_not_redelivered_when_it_outlasts_the_ack_wait(
    nats_client: NatsClient, names: BusNames, nats_url: str
) -> None:
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, 2, timedelta(seconds=1))
    poll = poll_for("123412341234", ["us-east-1"])
    await publish_polls(js, names, [poll])

    async with (
        replica(nats_url, names, SlowAws(3.5), ack_wait_seconds=1),
        replica(nats_url, names, SlowAws(3.5), ack_wait_seconds=1),
    ):
        events = await collect(js, names, lambda e: e[names.resources_discovered])
        info = await js.consumer_info(names.polls_stream, names.poller_consumer)

    assert [e.attempt for e in events[names.tasks_started]] == [1]
    assert len(events[names.resources_discovered]) == 1
    assert info.num_redelivered == 0
