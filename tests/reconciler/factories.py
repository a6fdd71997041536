"""Small builders for snapshots, events and accounts in the reconciler's tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from services.reconciler import accounts, discovery
from services.reconciler.discovery import Outcome
from shared.bus import BusNames
from shared.events import (
    AccountSpec,
    CommandReply,
    CreateAccount,
    Eni,
    Instance,
    PrivateAddress,
    RegionSnapshot,
    ResourcesDiscovered,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)

A = "111111111111"
B = "222222222222"
C = "333333333333"
OUTSIDER = "999999999999"
REGION = "eu-west-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def vpc(vpc_id: str, owner: str, **fields: object) -> Vpc:
    return Vpc(vpc_id=vpc_id, owner_id=owner, cidr_block="10.0.0.0/16", **fields)


def subnet(subnet_id: str, vpc_id: str, owner: str, **fields: object) -> Subnet:
    return Subnet(subnet_id=subnet_id, vpc_id=vpc_id, owner_id=owner, **fields)


def group(
    group_id: str, owner: str, vpc_id: str, rules: int = 1, **fields: object
) -> SecurityGroup:
    return SecurityGroup(
        group_id=group_id,
        group_name=group_id,
        owner_id=owner,
        vpc_id=vpc_id,
        rules=[
            SecurityGroupRule(
                rule_id=f"{group_id}-r{n}",
                group_id=group_id,
                is_egress=False,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=f"10.{n}.0.0/16",
            )
            for n in range(rules)
        ],
        **fields,
    )


def eni(
    eni_id: str,
    owner: str,
    subnet_id: str,
    vpc_id: str,
    ip: str = "10.0.0.10",
    groups: tuple[str, ...] = (),
    **fields: object,
) -> Eni:
    return Eni(
        eni_id=eni_id,
        owner_id=owner,
        subnet_id=subnet_id,
        vpc_id=vpc_id,
        private_addresses=[PrivateAddress(address=ip, is_primary=True)],
        group_ids=list(groups),
        **fields,
    )


def instance(instance_id: str, owner: str, subnet_id: str, vpc_id: str) -> Instance:
    return Instance(
        instance_id=instance_id, owner_id=owner, subnet_id=subnet_id, vpc_id=vpc_id
    )


def discovered(
    account: str,
    snapshot: RegionSnapshot,
    started: datetime,
    region: str = REGION,
    task_id: uuid.UUID | None = None,
) -> ResourcesDiscovered:
    return ResourcesDiscovered(
        task_id=task_id or uuid.uuid4(),
        account_id=account,
        region=region,
        discovery_started_at=started,
        discovery_finished_at=started + timedelta(seconds=30),
        snapshot=snapshot,
    )


async def add_account(
    pool: asyncpg.Pool, account_id: str, regions: tuple[str, ...] = (REGION,)
) -> None:
    reply = await accounts.create_account(
        pool,
        CreateAccount(
            account=AccountSpec(
                account_id=account_id,
                account_name=f"account {account_id}",
                default_regions=list(regions),
            )
        ),
    )
    assert reply.ok, reply


async def poll(
    pool: asyncpg.Pool,
    account: str,
    snapshot: RegionSnapshot,
    started: datetime,
    region: str = REGION,
) -> Outcome:
    event = discovered(account, snapshot, started, region)
    return await discovery.apply_discovered(pool, event, event.snapshot)


async def ids(pool: asyncpg.Pool, table: str, key: str) -> set[str]:
    rows = await pool.fetch(f"SELECT {key} FROM {table}")
    return {row[key] for row in rows}


async def request(
    nc: NatsClient, subject: str, command: BaseModel | bytes
) -> CommandReply:
    """Send a command as the API does (unset fields left out) and parse the reply."""
    data = (
        command
        if isinstance(command, bytes)
        else command.model_dump_json(exclude_unset=True).encode()
    )
    message = await nc.request(subject, data, timeout=10)
    return CommandReply.model_validate_json(message.data)


async def create(
    nc: NatsClient, names: BusNames, account: str, regions: list[str]
) -> None:
    spec = AccountSpec(
        account_id=account, account_name=account, default_regions=regions
    )
    reply = await request(nc, names.accounts_create, CreateAccount(account=spec))
    assert reply.ok, reply


async def eventually(
    check: Callable[[], Awaitable[object]], within: float = 15
) -> None:
    """Wait until `check()` is truthy, failing after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)
