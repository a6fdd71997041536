"""Wiring: settings, NATS, the shared consumer, AWS access and the poll service."""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import boto3
import structlog
from nats.aio.client import Client as NatsClient

from services.poller.aws import AwsAccess, ClientHook
from services.poller.consumer import PollConsumer
from services.poller.outbox import JetStreamOutbox
from services.poller.service import Poller, PollLimits
from shared.bus import BusNames, close_connection, ensure_poller_consumer
from shared.settings import PollerSettings

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 60.0


def build_aws(
    settings: PollerSettings, client_hook: ClientHook | None = None
) -> AwsAccess:
    return AwsAccess(
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.poller_max_attempts,
        client_hook=client_hook,
    )


def limits(settings: PollerSettings) -> PollLimits:
    return PollLimits(
        region_concurrency=settings.poller_region_concurrency,
        calls_per_second=settings.poller_calls_per_second,
        region_timeout_seconds=settings.poller_region_timeout_seconds,
    )


class NatsUnreachable(Exception):
    """NATS did not answer within the start-up time."""


async def connect(url: str, within: float = CONNECT_TIMEOUT_SECONDS) -> NatsClient:
    """Connect to NATS, waiting up to `within` for it; then reconnect forever."""

    async def on_error(error: Exception) -> None:
        log.warning("nats_error", url=_redacted(url), error=str(error) or repr(error))

    client = NatsClient()

    async def on_disconnected() -> None:
        if not client.is_closed:  # closing at shutdown is no disconnection
            log.warning("nats_disconnected", url=_redacted(url))

    async def on_reconnected() -> None:
        log.info("nats_reconnected", url=_redacted(url))

    try:
        await asyncio.wait_for(
            client.connect(
                url,
                name="poller",
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            within,
        )
    except TimeoutError:
        raise NatsUnreachable(
            f"no NATS server answered at {_redacted(url)} within {within:g} s"
        ) from None
    return client


async def run(settings: PollerSettings, stop: asyncio.Event | None = None) -> None:
    """Serve polls until `stop` is set (or SIGTERM / SIGINT arrives)."""
    names = BusNames(settings.nats_namespace)
    client = await connect(settings.nats_url)
    stop = stop or _stop_on_signals()
    js = client.jetstream()
    await ensure_poller_consumer(
        js,
        names,
        settings.scheduled_polling_max_concurrent,
        timedelta(seconds=settings.poller_ack_wait_seconds),
    )
    slots = settings.scheduled_polling_max_concurrent
    threads = slots * (settings.poller_region_concurrency + 1)
    with ThreadPoolExecutor(threads, thread_name_prefix="aws") as executor:
        poller = Poller(
            build_aws(settings), JetStreamOutbox(js, names), limits(settings), executor
        )
        consumer = PollConsumer(
            js,
            names,
            poller,
            slots=slots,
            ack_wait_seconds=settings.poller_ack_wait_seconds,
        )
        _log_start(settings)
        try:
            await consumer.run(stop)
        finally:
            await close_connection(client)
            log.info("poller_stopped")


def _log_start(settings: PollerSettings) -> None:
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        log.warning(
            "no_base_credentials",
            reason="no AWS credentials found; every poll will fail to assume its role",
        )
    log.info(
        "poller_started",
        nats_url=_redacted(settings.nats_url),
        namespace=settings.nats_namespace,
        max_concurrent=settings.scheduled_polling_max_concurrent,
        region_concurrency=settings.poller_region_concurrency,
        calls_per_second=settings.poller_calls_per_second,
        max_attempts=settings.poller_max_attempts,
        region_timeout_seconds=settings.poller_region_timeout_seconds,
        ack_wait_seconds=settings.poller_ack_wait_seconds,
        aws_endpoint_url=settings.aws_endpoint_url,
        base_credentials=getattr(credentials, "method", None),
    )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _redacted(url: str) -> str:
    """The URL(s) without user names or passwords."""
    servers = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        servers.append(f"{parts.scheme}://{host}{port}")
    return ",".join(servers)
