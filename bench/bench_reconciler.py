"""Apply a large region snapshot, against a plain COPY of the same rows.

Sizes: BENCH_ENIS (default 50,000 ENIs, three addresses each) and
BENCH_INSTANCES (default a fifth of the ENIs). Runs in a database of its own
on the server of DATABASE_URL, dropped at the end.

Phases: a plain COPY of the same rows into the same (empty) tables; the first
apply into an empty database; an unchanged re-poll (with PostgreSQL's row
counters for the resource tables); a re-poll with 5% of the ENIs changed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.reconciler import accounts, discovery
from services.reconciler.apply import TABLES
from services.reconciler.bootstrap import asyncpg_dsn
from services.reconciler.rows import stage
from shared.db import admin
from shared.events import (
    AccountSpec,
    CreateAccount,
    Eni,
    EniAttachment,
    Instance,
    PrivateAddress,
    RegionSnapshot,
    ResourcesDiscovered,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
RESOURCE_TABLES = [table.name for table in TABLES]
COPY_RUNS = 2
"""The baseline is the best of this many COPYs: it must not gain from noise."""


def _ip(n: int, base: int) -> str:
    return f"10.{base + (n >> 16 & 63)}.{n >> 8 & 255}.{n & 255}"


def make_snapshot(enis: int, instances: int, changed_every: int = 0) -> RegionSnapshot:
    """A region of `enis` ENIs; every `changed_every`-th one differs (0: none)."""
    vpcs = [Vpc(vpc_id=f"vpc-{v:04d}", owner_id=ACCOUNT) for v in range(10)]
    subnets = [
        Subnet(
            subnet_id=f"subnet-{s:04d}", vpc_id=f"vpc-{s % 10:04d}", owner_id=ACCOUNT
        )
        for s in range(200)
    ]
    groups = [
        SecurityGroup(
            group_id=f"sg-{g:04d}",
            group_name=f"group {g}",
            owner_id=ACCOUNT,
            vpc_id=f"vpc-{g % 10:04d}",
            rules=[
                SecurityGroupRule(
                    rule_id=f"sgr-{g:04d}-{r}",
                    group_id=f"sg-{g:04d}",
                    is_egress=r == 0,
                    ip_protocol="tcp",
                    from_port=443 + r,
                    to_port=443 + r,
                    cidr_ipv4="10.0.0.0/8",
                )
                for r in range(3)
            ],
        )
        for g in range(500)
    ]
    return RegionSnapshot(
        vpcs=vpcs,
        subnets=subnets,
        security_groups=groups,
        enis=[_eni(n, instances, changed_every) for n in range(enis)],
        instances=[
            Instance(
                instance_id=f"i-{n:08x}",
                owner_id=ACCOUNT,
                instance_type="m5.large",
                state="running",
                vpc_id=f"vpc-{n % 10:04d}",
                subnet_id=f"subnet-{n % 200:04d}",
                private_ip=_ip(n, 0),
                eni_ids=[f"eni-{n:08x}"],
            )
            for n in range(instances)
        ],
    )


def _eni(n: int, instances: int, changed_every: int) -> Eni:
    changed = changed_every and n % changed_every == 0
    return Eni(
        eni_id=f"eni-{n:08x}",
        owner_id=ACCOUNT,
        vpc_id=f"vpc-{n % 10:04d}",
        subnet_id=f"subnet-{n % 200:04d}",
        availability_zone="us-east-1a",
        interface_type="interface",
        status="in-use",
        description="changed" if changed else f"eni {n}",
        mac_address=f"02:00:{n >> 24 & 255:02x}:{n >> 16 & 255:02x}:"
        f"{n >> 8 & 255:02x}:{n & 255:02x}",
        attachment=EniAttachment(instance_id=f"i-{n:08x}", device_index=0)
        if n < instances
        else None,
        private_addresses=[
            PrivateAddress(address=_ip(n, 0), is_primary=True),
            PrivateAddress(address=_ip(n, 64 if not changed else 128)),
        ],
        ipv6_addresses=[f"2001:db8::{n >> 16:x}:{n & 0xFFFF:x}"],
        group_ids=[f"sg-{n % 500:04d}", f"sg-{(n + 1) % 500:04d}"],
        tags={"Name": f"eni-{n}"},
    )


def _event(snapshot: RegionSnapshot, minutes: int) -> ResourcesDiscovered:
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return ResourcesDiscovered(
        task_id=uuid.uuid4(),
        account_id=ACCOUNT,
        region=REGION,
        discovery_started_at=started,
        discovery_finished_at=started + timedelta(minutes=1),
        snapshot=snapshot,
    )


def _csv_value(value: object) -> object:
    if isinstance(value, list):
        return "{" + ",".join(f'"{item}"' for item in value) + "}"
    return value


def _csv(records: list[tuple[object, ...]]) -> bytes:
    """Rows as CSV for COPY: every value quoted, None as "" (read as NULL)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC)
    for record in records:
        writer.writerow([_csv_value(value) for value in record])
    return buffer.getvalue().encode()


async def _plain_copy(pool: asyncpg.Pool, snapshot: RegionSnapshot) -> float:
    """COPY the same rows straight into the inventory tables (no comparison).

    Text CSV, parsed by PostgreSQL, is the fastest plain COPY from Python
    (asyncpg's binary COPY would parse every address in Python); the CSV is
    built before the clock starts.
    """
    staged = stage(snapshot)
    payloads = {}
    for table in TABLES:
        extra = (REGION, ACCOUNT, [ACCOUNT]) if table.resource else ()
        records = [row + extra for row in staged.table(table.name)]
        payloads[table.name] = _csv(records)
    async with pool.acquire() as connection:
        started = time.perf_counter()
        async with connection.transaction():
            for table in TABLES:
                columns = list(table.columns)
                if table.resource:
                    columns += ["region", "reported_by", "seen_by"]
                await connection.copy_to_table(
                    table.name,
                    source=io.BytesIO(payloads[table.name]),
                    columns=columns,
                    format="csv",
                    force_null=columns,
                )
        elapsed = time.perf_counter() - started
        await connection.execute(f"TRUNCATE {', '.join(RESOURCE_TABLES)} CASCADE")
    return elapsed


async def _counters(pool: asyncpg.Pool) -> dict[str, tuple[int, int, int]]:
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(1.2)
    reader = await asyncpg.connect(pool._connect_args[0])  # type: ignore[attr-defined]
    try:
        rows = await reader.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            " WHERE relname = ANY($1::text[])",
            RESOURCE_TABLES,
        )
    finally:
        await reader.close()
    return {row["relname"]: tuple(row[1:]) for row in rows}


async def _apply(pool: asyncpg.Pool, event: ResourcesDiscovered) -> float:
    started = time.perf_counter()
    outcome = await discovery.apply_discovered(pool, event, event.snapshot)
    elapsed = time.perf_counter() - started
    assert outcome.status == "applied", outcome
    assert outcome.result is not None
    print(
        f"    added {outcome.result.total('added')}, updated "
        f"{outcome.result.total('updated')}, removed {outcome.result.total('removed')}"
    )
    return elapsed


async def run(database_url: str, enis: int, instances: int) -> None:
    print(f"  snapshot: {enis} ENIs, {enis * 3} addresses, {instances} instances")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"  load average before: {load} on {os.cpu_count()} CPUs")
    first = make_snapshot(enis, instances)
    changed = make_snapshot(enis, instances, changed_every=20)
    # One connection: its statistics are flushed on demand for the counters.
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=1)
    try:
        await accounts.create_account(
            pool,
            CreateAccount(
                account=AccountSpec(
                    account_id=ACCOUNT, account_name="bench", default_regions=[REGION]
                )
            ),
        )
        copies = [await _plain_copy(pool, first) for _ in range(COPY_RUNS)]
        copy_seconds = min(copies)
        print(
            f"  plain COPY of the same rows: {copy_seconds:.2f} s"
            f" (best of {', '.join(f'{c:.2f}' for c in copies)})"
        )

        apply_first = await _apply(pool, _event(first, 0))
        _report("first apply (empty database)", enis, apply_first, copy_seconds)

        before = await _counters(pool)
        unchanged = await _apply(pool, _event(first, 60))
        after = await _counters(pool)
        _report("unchanged re-poll", enis, unchanged, copy_seconds)
        writes = {
            table: tuple(
                a - b for a, b in zip(after[table], before[table], strict=True)
            )
            for table in RESOURCE_TABLES
        }
        print("    row counters (n_tup_ins, n_tup_upd, n_tup_del) during it:")
        for table, delta in writes.items():
            print(f"      {table:22} {delta}")
        total = sum(sum(delta) for delta in writes.values())
        print(f"    resource rows written: {total} (target 0)")

        repoll = await _apply(pool, _event(changed, 120))
        _report("re-poll with 5% of ENIs changed", enis, repoll, copy_seconds)
    finally:
        await pool.close()


def _report(name: str, enis: int, seconds: float, copy_seconds: float) -> None:
    print(
        f"  {name}: {seconds:.2f} s, {enis / seconds:,.0f} ENIs/s,"
        f" {seconds / copy_seconds:.2f}x the plain COPY"
    )


async def main() -> None:
    enis = int(os.environ.get("BENCH_ENIS", "50000"))
    instances = int(os.environ.get("BENCH_INSTANCES", str(enis // 5)))
    server = os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"inventory_bench_{uuid.uuid4().hex[:8]}"
    url = await admin.create_database(server, name)
    try:
        await asyncio.to_thread(admin.upgrade, url)
        await run(url, enis, instances)
    finally:
        await admin.drop_database(server, name)
