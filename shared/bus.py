"""Names on the bus (subjects, streams, consumers, buckets) and their declaration.

In production the namespace is empty and subjects are exactly `account.poll`,
`resources.discovered` and so on. Tests and side-by-side installations set
`NATS_NAMESPACE` so that their subjects, streams and buckets never meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

POLL_ACK_WAIT = timedelta(minutes=2)
"""How long a poll may go without telling JetStream it is still working."""


@dataclass(frozen=True)
class BusNames:
    """Every name a service uses on NATS, derived from one namespace."""

    namespace: str = ""

    def subject(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    def _upper(self, name: str) -> str:
        return f"{self.namespace}_{name}".upper() if self.namespace else name

    def _lower(self, name: str) -> str:
        return f"{self.namespace}_{name}".lower() if self.namespace else name

    # Events (JetStream)
    @property
    def account_poll(self) -> str:
        return self.subject("account.poll")

    @property
    def resources_discovered(self) -> str:
        return self.subject("resources.discovered")

    @property
    def discovery_failed(self) -> str:
        return self.subject("discovery.failed")

    @property
    def tasks_created(self) -> str:
        return self.subject("tasks.created")

    @property
    def tasks_created_batch(self) -> str:
        return self.subject("tasks.created_batch")

    @property
    def tasks_started(self) -> str:
        return self.subject("tasks.started")

    @property
    def tasks_finished(self) -> str:
        return self.subject("tasks.finished")

    # Commands (core NATS request-reply)
    @property
    def accounts_create(self) -> str:
        return self.subject("accounts.create")

    @property
    def accounts_update(self) -> str:
        return self.subject("accounts.update")

    @property
    def accounts_delete(self) -> str:
        return self.subject("accounts.delete")

    @property
    def accounts_remove_region(self) -> str:
        return self.subject("accounts.remove_region")

    @property
    def tokens_create(self) -> str:
        return self.subject("tokens.create")

    @property
    def tokens_revoke(self) -> str:
        return self.subject("tokens.revoke")

    @property
    def scheduler_start_cycle(self) -> str:
        return self.subject("scheduler.start_cycle")

    @property
    def scheduler_poll_account(self) -> str:
        return self.subject("scheduler.poll_account")

    # Streams, consumers, buckets
    @property
    def polls_stream(self) -> str:
        return self._upper("POLLS")

    @property
    def discovery_stream(self) -> str:
        return self._upper("DISCOVERY")

    @property
    def tasks_stream(self) -> str:
        return self._upper("TASKS")

    @property
    def poller_consumer(self) -> str:
        return "poller"

    @property
    def reconciler_consumer(self) -> str:
        return "reconciler"

    @property
    def snapshot_bucket(self) -> str:
        return self._lower("snapshots")

    @property
    def scheduler_bucket(self) -> str:
        return self._lower("scheduler")


def stream_configs(names: BusNames) -> list[StreamConfig]:
    """The streams the inventory needs, file-backed so a restart loses nothing."""
    return [
        StreamConfig(
            name=names.polls_stream,
            subjects=[names.account_poll],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=timedelta(hours=2).total_seconds(),
        ),
        StreamConfig(
            name=names.discovery_stream,
            subjects=[
                names.tasks_created,
                names.tasks_created_batch,
                names.tasks_started,
                names.resources_discovered,
                names.discovery_failed,
            ],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=timedelta(hours=2).total_seconds(),
        ),
        StreamConfig(
            name=names.tasks_stream,
            subjects=[names.tasks_finished],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=timedelta(days=7).total_seconds(),
            duplicate_window=timedelta(hours=2).total_seconds(),
        ),
    ]


async def ensure_streams(js: JetStreamContext, names: BusNames) -> None:
    """Create the streams, or bring an existing one to the expected config."""
    for config in stream_configs(names):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)


def poller_consumer_config(
    names: BusNames, max_concurrent: int, ack_wait: timedelta = POLL_ACK_WAIT
) -> ConsumerConfig:
    """The durable consumer every poller replica pulls `account.poll` from.

    `max_ack_pending` is the global cap on account polls running at once,
    whatever the number of replicas: JetStream hands out no more messages
    until one is acknowledged.
    """
    return ConsumerConfig(
        durable_name=names.poller_consumer,
        filter_subject=names.account_poll,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait.total_seconds(),
        max_ack_pending=max_concurrent,
    )


async def ensure_poller_consumer(
    js: JetStreamContext,
    names: BusNames,
    max_concurrent: int,
    ack_wait: timedelta | None = None,
) -> None:
    """Create the poller consumer, or set its cap to `max_concurrent`.

    Without `ack_wait` an existing consumer keeps its own (the pollers set it),
    so the scheduler's start never undoes the pollers' configuration. The cap
    is one for every replica together: changing it is logged as a warning,
    since a replica started with another value changes it for all.
    """
    await ensure_streams(js, names)
    try:
        info = await js.consumer_info(names.polls_stream, names.poller_consumer)
    except NotFoundError:
        info = None
    if ack_wait is None:
        ack_wait = POLL_ACK_WAIT
        if info is not None and info.config.ack_wait:
            ack_wait = timedelta(seconds=info.config.ack_wait)
    before = info.config.max_ack_pending if info is not None else None
    if before is not None and before != max_concurrent:
        structlog.get_logger(__name__).warning(
            "poll_cap_changed",
            consumer=names.poller_consumer,
            before=before,
            after=max_concurrent,
            hint="every scheduler and poller should have the same"
            " SCHEDULED_POLLING_MAX_CONCURRENT",
        )
    await js.add_consumer(
        names.polls_stream, poller_consumer_config(names, max_concurrent, ack_wait)
    )


async def close_connection(client: NatsClient) -> None:
    """Drain the connection; a server already gone at shutdown is not an error."""
    try:
        await client.drain()
    except NatsError as error:
        structlog.get_logger(__name__).warning(
            "nats_drain_failed", reason=type(error).__name__
        )
        await client.close()
