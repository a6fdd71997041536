"""Streams are declared idempotently, and namespaces keep test runs apart."""

from __future__ import annotations

from datetime import timedelta

from nats.aio.client import Client as NatsClient
from structlog.testing import capture_logs

from shared.bus import BusNames, ensure_poller_consumer, ensure_streams


def test_production_subjects_have_their_plain_names() -> None:
    names = BusNames()

    assert names.account_poll == "account.poll"
    assert names.tasks_created_batch == "tasks.created_batch"
    assert names.resources_discovered == "resources.discovered"
    assert names.polls_stream == "POLLS"


def test_a_namespace_prefixes_every_subject_and_stream() -> None:
    names = BusNames(namespace="run42")

    assert names.account_poll == "run42.account.poll"
    assert names.discovery_stream == "RUN42_DISCOVERY"
    assert names.snapshot_bucket == "run42_snapshots"


async def test_streams_are_created_once_and_updated_after(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()

    await ensure_streams(js, names)
    await ensure_streams(js, names)

    info = await js.stream_info(names.polls_stream)
    discovery = await js.stream_info(names.discovery_stream)
    assert info.config.subjects == [names.account_poll]
    assert names.tasks_created_batch in (discovery.config.subjects or [])
    ack = await js.publish(names.account_poll, b"{}", headers={"Nats-Msg-Id": "x"})
    again = await js.publish(names.account_poll, b"{}", headers={"Nats-Msg-Id": "x"})
    assert again.duplicate and not ack.duplicate


async def test_poller_consumer_cap_follows_the_setting(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()

    with capture_logs() as logs:
        await ensure_poller_consumer(js, names, max_concurrent=2)
        await ensure_poller_consumer(js, names, max_concurrent=2)
        await ensure_poller_consumer(js, names, max_concurrent=5)

    info = await js.consumer_info(names.polls_stream, names.poller_consumer)
    assert info.config.max_ack_pending == 5
    changes = [entry for entry in logs if entry["event"] == "poll_cap_changed"]
    assert [(c["before"], c["after"], c["log_level"]) for c in changes] == [
        (2, 5, "warning")
    ]


async def test_cap_change_keeps_the_ack_wait_the_pollers_chose(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, 2, ack_wait=timedelta(seconds=7))

    await ensure_poller_consumer(js, names, max_concurrent=3)

    info = await js.consumer_info(names.polls_stream, names.poller_consumer)
    assert info.config.max_ack_pending == 3
    assert info.config.ack_wait == 7
