"""Planning and publishing one cycle of many eligible accounts, stagger 0.

Needs PostgreSQL and NATS (DATABASE_URL, NATS_URL; the machine's servers by
default). BENCH_SCHEDULER_ACCOUNTS sets the number of accounts (10,000).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import nats

from services.scheduler.adapters.db import SqlAccounts
from services.scheduler.adapters.nats import (
    JetStreamBus,
    KvCycleStore,
    scheduler_bucket,
)
from services.scheduler.clock import SystemClock
from services.scheduler.planning import CycleKind, plan_cycle
from services.scheduler.service import ScheduleConfig, Scheduler
from shared.bus import BusNames, ensure_poller_consumer
from shared.db import admin
from shared.db.engine import make_engine
from shared.logging import configure_logging

SERVER_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
ACCOUNTS = int(os.environ.get("BENCH_SCHEDULER_ACCOUNTS", "10000"))
TARGET_SECONDS = 2.0


async def _seed(url: str, count: int) -> None:
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await connection.copy_records_to_table(
            "accounts",
            records=[
                (
                    str(100_000_000_000 + i),
                    f"bench {i}",
                    "instance_role",
                    True,
                    "PaloInventoryInspectionRole",
                    ["us-east-1", "eu-west-1"],
                )
                for i in range(count)
            ],
            columns=[
                "account_id",
                "account_name",
                "auth_method",
                "is_active",
                "default_role_name",
                "default_regions",
            ],
        )
    finally:
        await connection.close()


async def _raw_publish_rate(js: Any, names: BusNames, count: int) -> float:
    """Messages per second of bare pipelined publishes, for comparison."""
    payload = b"x" * 400
    started = time.perf_counter()
    acks = [
        await js.publish_async(
            names.tasks_created, payload, headers={"Nats-Msg-Id": f"raw-{i}"}
        )
        for i in range(count)
    ]
    await asyncio.gather(*acks)
    return count / (time.perf_counter() - started)


async def main() -> None:
    configure_logging("bench", "INFO")
    name = f"bench_scheduler_{uuid.uuid4().hex[:8]}"
    names = BusNames(namespace=name)
    url = await admin.create_database(SERVER_URL, name)
    client = await nats.connect(NATS_URL)
    engine = make_engine(url)
    try:
        await asyncio.to_thread(admin.upgrade, url)
        await _seed(url, ACCOUNTS)
        js = client.jetstream(timeout=30)
        await ensure_poller_consumer(js, names, 2)
        scheduler = Scheduler(
            ScheduleConfig(
                enabled=True, cron="0 * * * *", stagger_seconds=0, max_concurrent=2
            ),
            SystemClock(),
            SqlAccounts(engine),
            JetStreamBus(js, names),
            KvCycleStore(await scheduler_bucket(js, names)),
        )

        plan_time = datetime.now(UTC)
        accounts_read = time.perf_counter()
        rows = await SqlAccounts(engine).accounts()
        accounts_read = time.perf_counter() - accounts_read
        planned = time.perf_counter()
        plan_cycle("bench-dry-run", CycleKind.MANUAL, rows, {}, plan_time, 0)
        planned = time.perf_counter() - planned

        started = time.perf_counter()
        plan = await scheduler.start_cycle(CycleKind.MANUAL, "bench")
        announced = time.perf_counter()
        await scheduler.wait_for_cycle(plan.cycle_id)
        finished = time.perf_counter()

        polls = (await js.stream_info(names.polls_stream)).state.messages
        announcements = (await js.stream_info(names.discovery_stream)).state.messages
        tasks = len(plan.children) + 1
        total = finished - started
        messages = polls + announcements
        print(
            f"accounts: {ACCOUNTS}, polls published: {polls}, "
            f"tasks announced: {tasks} in {announcements} messages"
        )
        print(
            f"plan + announce: {announced - started:.2f} s (of which reading "
            f"accounts ~{accounts_read:.2f} s, planning ~{planned:.2f} s)"
        )
        print(f"publish polls:   {finished - announced:.2f} s")
        print(
            f"cycle total:     {total:.2f} s (target < {TARGET_SECONDS:.0f} s: "
            f"{'met' if total < TARGET_SECONDS else 'NOT met'})"
        )
        print(
            f"messages/s:      {messages / total:,.0f} "
            f"({messages} messages: polls and task announcements)"
        )
        print(f"polls/s:         {polls / (finished - announced):,.0f}")
        baseline = await _raw_publish_rate(js, names, messages)
        print(
            f"bare JetStream publish on this machine now: {baseline:,.0f} msg/s "
            f"({messages / baseline:.2f} s for the same {messages} messages; "
            f"{(polls + tasks) / baseline:.2f} s for {polls + tasks}, "
            "one message per task)"
        )
    finally:
        js = client.jetstream()
        for stream in await js.streams_info():
            if stream.config.name and name.lower() in stream.config.name.lower():
                await js.delete_stream(stream.config.name)
        await client.close()
        await engine.dispose()
        await admin.drop_database(SERVER_URL, name)
