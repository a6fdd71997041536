"""Inventory rows written straight into the test database, as the reconciler would.

The shared VPC of account A holds ENIs of A and of B; account C is not in the
inventory and has an ENI with the same private address in another VPC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.models import (
    Account,
    Base,
    DiscoveryTask,
    Ec2Instance,
    Eni,
    EniAddress,
    EniSecurityGroup,
    RegionPoll,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)

A, B, C = "111111111111", "222222222222", "333333333333"
REGION = "eu-west-1"
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
A_APPLIED = T0 + timedelta(minutes=5)
B_APPLIED = T0 + timedelta(minutes=9)

VPC = "vpc-0a000001"
OTHER_VPC = "vpc-0c000002"
SUBNET_1, SUBNET_2, OTHER_SUBNET = (
    "subnet-0a000001",
    "subnet-0a000002",
    "subnet-0c000003",
)
GROUP = "sg-0a000001"
ENI_1, ENI_2, ENI_3, ENI_C = (
    "eni-0a000001",
    "eni-0b000002",
    "eni-0a000003",
    "eni-0c000004",
)
INSTANCE = "i-0a000001"

CYCLE = uuid.UUID("00000000-0000-4000-8000-000000000001")
CHILD_OK = uuid.UUID("00000000-0000-4000-8000-000000000002")
CHILD_FAILED = uuid.UUID("00000000-0000-4000-8000-000000000003")
MANUAL = uuid.UUID("00000000-0000-4000-8000-000000000004")


def _resource(owner: str, seen_by: list[str], **tags: str) -> dict[str, Any]:
    return {
        "region": REGION,
        "owner_account_id": owner,
        "reported_by": seen_by[0],
        "seen_by": seen_by,
        "tags": tags,
        "first_seen_at": T0,
        "updated_at": T0,
    }


async def _insert(
    db: AsyncConnection, model: type[Base], rows: list[dict[str, Any]]
) -> None:
    """One statement per row: rows leave out different columns."""
    for row in rows:
        await db.execute(insert(model).values(**row))


async def seed_inventory(engine: AsyncEngine) -> None:
    async with engine.begin() as db:
        await _insert(
            db,
            Account,
            [
                {
                    "account_id": A,
                    "account_name": "alpha",
                    "auth_method": "instance_role",
                    "default_role_name": "InventoryRole",
                    "default_regions": [REGION],
                },
                {
                    "account_id": B,
                    "account_name": "beta",
                    "auth_method": "instance_role",
                    "role_arn": f"arn:aws:iam::{B}:role/InventoryRole",
                    "external_id": "beta-external",
                    "default_regions": [REGION, "us-east-1"],
                },
            ],
        )
        await _insert(
            db,
            RegionPoll,
            [
                {"account_id": A, "region": REGION, "last_applied_at": A_APPLIED},
                {"account_id": B, "region": REGION, "last_applied_at": B_APPLIED},
            ],
        )
        await _insert(
            db,
            Vpc,
            [
                {
                    **_resource(A, [A, B], Name="shared"),
                    "vpc_id": VPC,
                    "state": "available",
                    "cidr_block": "10.1.0.0/16",
                    "cidr_blocks": ["10.1.0.0/16"],
                    "ipv6_cidr_blocks": ["2001:db8::/56"],
                },
                {
                    **_resource(C, [B], Name="other"),
                    "vpc_id": OTHER_VPC,
                    "state": "available",
                    "cidr_block": "10.1.0.0/16",
                    "is_default": True,
                },
            ],
        )
        await _insert(
            db,
            Subnet,
            [
                {
                    **_resource(A, [A, B], Name="front"),
                    "subnet_id": SUBNET_1,
                    "vpc_id": VPC,
                    "cidr_block": "10.1.1.0/24",
                    "availability_zone": "eu-west-1a",
                    "state": "available",
                },
                {
                    **_resource(A, [A], Name="back"),
                    "subnet_id": SUBNET_2,
                    "vpc_id": VPC,
                    "cidr_block": "10.1.2.0/24",
                    "availability_zone": "eu-west-1b",
                    "state": "available",
                },
                {
                    **_resource(C, [B]),
                    "subnet_id": OTHER_SUBNET,
                    "vpc_id": OTHER_VPC,
                    "cidr_block": "10.1.1.0/24",
                    "state": "available",
                },
            ],
        )
        await _insert(
            db,
            SecurityGroup,
            [
                {
                    **_resource(A, [A, B]),
                    "group_id": GROUP,
                    "group_name": "web",
                    "vpc_id": VPC,
                    "description": "web servers",
                }
            ],
        )
        await _insert(
            db,
            SecurityGroupRule,
            [
                {
                    "rule_id": "sgr-0a000001",
                    "group_id": GROUP,
                    "is_egress": False,
                    "ip_protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_ipv4": "0.0.0.0/0",
                },
                {
                    "rule_id": "sgr-0a000002",
                    "group_id": GROUP,
                    "is_egress": True,
                    "ip_protocol": "-1",
                    "cidr_ipv4": "0.0.0.0/0",
                },
            ],
        )
        await _insert(
            db,
            Eni,
            [
                {
                    **_resource(A, [A], Name="web-1"),
                    "eni_id": ENI_1,
                    "vpc_id": VPC,
                    "subnet_id": SUBNET_1,
                    "interface_type": "interface",
                    "status": "in-use",
                    "private_ip": "10.1.1.10",
                    "mac_address": "02:00:00:00:00:01",
                    "attachment_id": "eni-attach-0a000001",
                    "attachment_instance_id": INSTANCE,
                    "attachment_instance_owner_id": A,
                    "attachment_device_index": 0,
                    "attachment_status": "attached",
                },
                {
                    **_resource(B, [B], Name="beta-app"),
                    "eni_id": ENI_2,
                    "vpc_id": VPC,
                    "subnet_id": SUBNET_1,
                    "interface_type": "interface",
                    "status": "in-use",
                    "private_ip": "10.1.1.20",
                },
                {
                    **_resource(A, [A]),
                    "eni_id": ENI_3,
                    "vpc_id": VPC,
                    "subnet_id": SUBNET_2,
                    "interface_type": "nat_gateway",
                    "status": "available",
                    "private_ip": "10.1.2.30",
                },
                {
                    **_resource(C, [B]),
                    "eni_id": ENI_C,
                    "vpc_id": OTHER_VPC,
                    "subnet_id": OTHER_SUBNET,
                    "interface_type": "interface",
                    "status": "in-use",
                    "private_ip": "10.1.1.10",
                },
            ],
        )
        address = {
            "is_primary": False,
            "private_address": None,
            "public_dns_name": None,
        }
        await _insert(
            db,
            EniAddress,
            [
                {
                    **address,
                    "eni_id": ENI_1,
                    "address": "10.1.1.10/32",
                    "kind": "private_ipv4",
                    "is_primary": True,
                },
                {
                    **address,
                    "eni_id": ENI_1,
                    "address": "10.1.1.11/32",
                    "kind": "private_ipv4",
                },
                {
                    **address,
                    "eni_id": ENI_1,
                    "address": "203.0.113.10/32",
                    "kind": "public_ipv4",
                    "private_address": "10.1.1.10",
                    "public_dns_name": "ec2-203-0-113-10.compute.amazonaws.com",
                },
                {
                    **address,
                    "eni_id": ENI_1,
                    "address": "2001:db8::10/128",
                    "kind": "ipv6",
                },
                {
                    **address,
                    "eni_id": ENI_2,
                    "address": "10.1.1.20/32",
                    "kind": "private_ipv4",
                    "is_primary": True,
                },
                {
                    **address,
                    "eni_id": ENI_2,
                    "address": "10.1.1.64/28",
                    "kind": "ipv4_prefix",
                },
                {
                    **address,
                    "eni_id": ENI_3,
                    "address": "10.1.2.30/32",
                    "kind": "private_ipv4",
                    "is_primary": True,
                },
                {
                    **address,
                    "eni_id": ENI_C,
                    "address": "10.1.1.10/32",
                    "kind": "private_ipv4",
                    "is_primary": True,
                },
            ],
        )
        await _insert(
            db,
            EniSecurityGroup,
            [
                {"eni_id": ENI_1, "group_id": GROUP},
                {"eni_id": ENI_2, "group_id": GROUP},
                {"eni_id": ENI_C, "group_id": "sg-0c00000f"},
            ],
        )
        await _insert(
            db,
            Ec2Instance,
            [
                {
                    **_resource(A, [A], Name="web-1"),
                    "instance_id": INSTANCE,
                    "instance_type": "t3.micro",
                    "state": "running",
                    "vpc_id": VPC,
                    "subnet_id": SUBNET_1,
                    "private_ip": "10.1.1.10",
                    "public_ip": "203.0.113.10",
                    "eni_ids": [ENI_1],
                }
            ],
        )


async def seed_tasks(engine: AsyncEngine) -> None:
    """A finished cycle of two accounts (one failed), and a newer manual poll."""
    base = {"regions": [REGION], "attempts": 1}
    async with engine.begin() as db:
        await _insert(
            db,
            DiscoveryTask,
            [
                {
                    "id": CYCLE,
                    "kind": "cycle",
                    "cycle_id": "2026-01-05T10:00Z",
                    "status": "partially_failed",
                    "children_total": 2,
                    "children_succeeded": 1,
                    "children_failed": 1,
                    "created_at": T0,
                    "started_at": T0,
                    "finished_at": T0 + timedelta(minutes=10),
                },
                {
                    **base,
                    "id": CHILD_OK,
                    "parent_id": CYCLE,
                    "kind": "account_poll",
                    "account_id": A,
                    "status": "succeeded",
                    "region_results": {
                        REGION: {
                            "status": "succeeded",
                            "added": {"enis": 3, "vpcs": 1},
                            "updated": {},
                            "removed": {"enis": 1},
                        }
                    },
                    "created_at": T0 + timedelta(seconds=1),
                    "started_at": T0 + timedelta(seconds=2),
                    "finished_at": T0 + timedelta(minutes=5),
                },
                {
                    **base,
                    "id": CHILD_FAILED,
                    "parent_id": CYCLE,
                    "kind": "account_poll",
                    "account_id": B,
                    "status": "failed",
                    "error": "AssumeRole was denied",
                    "region_results": {
                        REGION: {
                            "status": "failed",
                            "error": "AssumeRole was denied",
                            "kind": "assume_role_failed",
                        }
                    },
                    "created_at": T0 + timedelta(seconds=2),
                    "started_at": T0 + timedelta(seconds=31),
                    "finished_at": T0 + timedelta(minutes=1),
                },
                {
                    **base,
                    "id": MANUAL,
                    "kind": "account_poll",
                    "account_id": A,
                    "status": "running",
                    "initiated_by": "token:ops",
                    "created_at": T0 + timedelta(hours=1),
                    "started_at": T0 + timedelta(hours=1),
                },
            ],
        )
