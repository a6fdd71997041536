"""The one place where the scheduler is wired to NATS and the database."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import structlog
from faststream.nats import NatsBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.adapters.db import SqlAccounts
from services.scheduler.adapters.nats import (
    JetStreamBus,
    KvCycleStore,
    scheduler_bucket,
)
from services.scheduler.clock import Clock, SystemClock
from services.scheduler.handlers import register_handlers
from services.scheduler.service import ScheduleConfig, Scheduler
from shared.bus import BusNames, ensure_poller_consumer
from shared.db.engine import make_engine
from shared.settings import SchedulerSettings

log = structlog.get_logger(__name__)

CONNECT_ATTEMPTS = 30
CONNECT_PAUSE_SECONDS = 2.0
PUBLISH_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 10.0


def schedule_config(settings: SchedulerSettings) -> ScheduleConfig:
    return ScheduleConfig(
        enabled=settings.scheduled_polling_enabled,
        cron=settings.scheduled_polling_cron,
        stagger_seconds=settings.scheduled_polling_stagger_seconds,
        max_concurrent=settings.scheduled_polling_max_concurrent,
    )


@dataclass
class SchedulerApp:
    """A connected replica: its broker, its database engine and its scheduler."""

    broker: NatsBroker
    engine: AsyncEngine
    scheduler: Scheduler

    async def run(self) -> None:
        """Answer commands and run the schedule until cancelled, then close."""
        try:
            await self.broker.start()
            await self.scheduler.run()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop answering and disconnect, never waiting more than a few seconds."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self.broker.stop()
        except TimeoutError:
            log.warning("broker_stop_timed_out", seconds=CLOSE_TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self.engine.dispose()
        except TimeoutError:
            log.warning("database_close_timed_out", seconds=CLOSE_TIMEOUT_SECONDS)


async def build(
    settings: SchedulerSettings,
    clock: Clock | None = None,
    config: ScheduleConfig | None = None,
) -> SchedulerApp:
    """Connect to NATS (retrying while it is not up yet) and wire a replica."""
    config = config or schedule_config(settings)
    names = BusNames(settings.nats_namespace)
    servers = [server.strip() for server in settings.nats_url.split(",")]
    broker = NatsBroker(
        servers,
        max_reconnect_attempts=-1,
        logger=logging.getLogger("services.scheduler.broker"),
    )
    await _connect(broker, servers)
    js = broker.connection.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)

    await ensure_poller_consumer(js, names, config.max_concurrent)
    kv = await scheduler_bucket(js, names)
    engine = make_engine(settings.database_url)
    scheduler = Scheduler(
        config,
        clock or SystemClock(),
        SqlAccounts(engine),
        JetStreamBus(js, names),
        KvCycleStore(kv),
    )
    register_handlers(broker, names, scheduler)

    return SchedulerApp(broker, engine, scheduler)


async def _connect(broker: NatsBroker, servers: list[str]) -> None:
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            await broker.connect()
            return
        except Exception as error:
            if attempt == CONNECT_ATTEMPTS:
                raise
            log.warning(
                "nats_unreachable",
                servers=servers,
                attempt=attempt,
                error=repr(error),
                retry_in_seconds=CONNECT_PAUSE_SECONDS,
            )
            await asyncio.sleep(CONNECT_PAUSE_SECONDS)
