"""Small builders for snapshots, events and accounts in the reconciler's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.reconciler import accounts, discovery
from services.reconciler.discovery import Outcome
from shared.events import (
    AccountSpec,
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
