"""Wiring: connect to NATS and PostgreSQL, declare streams, run the consumers.

The discovery stream is read by a durable pull consumer shared by every
reconciler replica; a few workers handle messages concurrently (applies of
one region serialize in the database). Commands are answered on core NATS
through a queue group, so each is handled by exactly one replica.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import make_url

from services.reconciler import discovery
from services.reconciler.handlers import (
    TRANSIENT,
    Deps,
    command_handler,
    command_routes,
    handle_discovery_message,
    publish_finished,
)
from shared.bus import BusNames, ensure_streams
from shared.settings import ReconcilerSettings

log = structlog.get_logger(__name__)

COMMAND_QUEUE = "reconciler"
CONNECT_ATTEMPTS = 30
DRAIN_SECONDS = 5.0


def asyncpg_dsn(url: str) -> str:
    """A `postgresql://` DSN for asyncpg from any SQLAlchemy-style URL."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def consumer_config(names: BusNames, settings: ReconcilerSettings) -> ConsumerConfig:
    """The durable consumer of the discovery stream (every subject of it)."""
    return ConsumerConfig(
        durable_name=names.reconciler_consumer,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=settings.reconciler_ack_wait_seconds,
        max_ack_pending=settings.reconciler_workers * 4,
    )


def sweep_interval(timeout_seconds: float) -> float:
    return max(0.5, min(60.0, timeout_seconds / 4))


async def _connect_database(settings: ReconcilerSettings) -> asyncpg.Pool:
    dsn = asyncpg_dsn(settings.database_url)
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=settings.reconciler_workers + 3
            )
            await pool.fetchval("SELECT 1 FROM region_polls LIMIT 1")
            return pool
        except (OSError, asyncpg.CannotConnectNowError) as error:
            log.warning("database_unreachable", attempt=attempt, error=repr(error))
            await asyncio.sleep(min(5.0, 0.5 * attempt))
        except asyncpg.UndefinedTableError:
            raise SystemExit(
                "the database has no inventory schema: run `make migrate` first"
            ) from None
    raise SystemExit("the database stayed unreachable; giving up")


async def _connect_nats(settings: ReconcilerSettings) -> NatsClient:
    client = NatsClient()

    async def disconnected() -> None:
        if not client.is_closed:  # closing at shutdown is no disconnection
            log.warning("nats_disconnected")

    async def reconnected() -> None:
        log.info("nats_reconnected")

    await client.connect(
        settings.nats_url.split(","),
        name="reconciler",
        max_reconnect_attempts=-1,
        connect_timeout=5,
        allow_reconnect=True,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
    )
    return client


async def run(
    settings: ReconcilerSettings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the reconciler until `stop` is set; `ready` is set once it listens."""
    names = BusNames(settings.nats_namespace)
    pool = await _connect_database(settings)
    nc = await _connect_nats(settings)
    js = nc.jetstream()
    await ensure_streams(js, names)
    await js.add_consumer(names.discovery_stream, consumer_config(names, settings))
    deps = Deps(
        pool=pool,
        nc=nc,
        js=js,
        names=names,
        heartbeat_seconds=settings.reconciler_ack_wait_seconds / 3,
    )

    for subject, model, action in command_routes(names):
        await nc.subscribe(
            subject, queue=COMMAND_QUEUE, cb=command_handler(deps, model, action)
        )
    await nc.flush()  # the server knows the subscriptions before we say ready
    subscription = await js.pull_subscribe_bind(
        durable=names.reconciler_consumer, stream=names.discovery_stream
    )
    workers = [
        asyncio.create_task(_work(deps, subscription, stop), name=f"worker-{n}")
        for n in range(settings.reconciler_workers)
    ]
    workers.append(asyncio.create_task(_sweep(deps, settings, stop), name="sweep"))
    log.info(
        "reconciler_ready",
        namespace=names.namespace,
        stream=names.discovery_stream,
        consumer=names.reconciler_consumer,
        workers=settings.reconciler_workers,
        task_timeout_seconds=settings.task_timeout_seconds,
    )
    if ready is not None:
        ready.set()

    await stop.wait()
    log.info("reconciler_stopping")
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()
    try:
        # Let command replies in flight go out, but never hang the shutdown.
        await asyncio.wait_for(nc.drain(), timeout=DRAIN_SECONDS)
    except Exception as error:
        log.warning("nats_drain_incomplete", error=repr(error))
        await nc.close()
    await pool.close()
    log.info("reconciler_stopped")


async def _work(
    deps: Deps, subscription: JetStreamContext.PullSubscription, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            messages = await subscription.fetch(batch=1, timeout=2)
        except NatsTimeoutError:
            continue
        except TRANSIENT as error:
            log.warning("fetch_failed", error=repr(error))
            await asyncio.sleep(1)
            continue
        for msg in messages:
            structlog.contextvars.clear_contextvars()
            try:
                await handle_discovery_message(deps, msg)
            except Exception:
                # Unexpected: leave the message to be redelivered after ack_wait.
                log.error("message_failed", exc_info=True)


async def _sweep(deps: Deps, settings: ReconcilerSettings, stop: asyncio.Event) -> None:
    """Fail tasks that outlived TASK_TIMEOUT_SECONDS, and update their parents."""
    interval = sweep_interval(settings.task_timeout_seconds)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        try:
            finished = await discovery.fail_expired_tasks(
                deps.pool, settings.task_timeout_seconds
            )
            if finished:
                log.warning("tasks_timed_out", count=len(finished))
            await publish_finished(deps, finished)
        except TRANSIENT as error:
            log.warning("sweep_failed", error=repr(error))
        except Exception:
            log.error("sweep_failed", exc_info=True)
