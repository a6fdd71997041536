"""The inventory's tables (SQLAlchemy 2 declarative models).

Resource rows are keyed by their AWS id. Each carries:

- `region` and `owner_account_id` (the `OwnerId` AWS reports, never inferred);
- `reported_by`: the account whose poll last inserted or changed the row;
- `seen_by`: the accounts whose latest snapshot of the region contains it;
- `first_seen_at` and `updated_at` (last content change).

A resource's last-seen time is not stored per row: it is the latest
`region_polls.last_applied_at` among the accounts in `seen_by` for its region,
so an unchanged re-poll writes no resource row at all. Readers get it from
the SQL function `resource_last_seen(region, seen_by)` or the views
`<table>_with_last_seen` (migration 0002).

Lists are keyset pages in AWS-id order, so an index on what a list filters by
(owner and region, VPC, subnet) ends with the table's key: a filtered page is
then read in order from the index, however few of the rows match.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, INET, JSONB, MACADDR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AccountIdType = String(12)
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return mapped_column(Timestamp, nullable=False, server_default=func.now())


class Account(Base):
    """An AWS account as operators manage it, and how its polls have gone."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(AccountIdType, primary_key=True)
    account_name: Mapped[str] = mapped_column(String(255))
    auth_method: Mapped[str] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    default_role_name: Mapped[str | None] = mapped_column(String(64))
    role_arn: Mapped[str | None] = mapped_column(String(2048))
    external_id: Mapped[str | None] = mapped_column(String(1224))
    default_regions: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), server_default=text("'{}'")
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    last_polled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_success_at: Mapped[datetime | None] = mapped_column(Timestamp)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    stale_since: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("account_id ~ '^[0-9]{12}$'", name="account_id_digits"),
        CheckConstraint(
            "auth_method IN ('instance_role', 'manual')", name="known_auth_method"
        ),
    )


class RegionPoll(Base):
    """Per account and region: the last applied snapshot and the poll health.

    `last_discovery_started_at` orders snapshots: an older one is superseded.
    `last_applied_at` is the last-seen time of everything the account reports
    in the region.
    """

    __tablename__ = "region_polls"

    account_id: Mapped[str] = mapped_column(AccountIdType, primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_discovery_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_applied_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_task_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    last_polled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_success_at: Mapped[datetime | None] = mapped_column(Timestamp)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    stale_since: Mapped[datetime | None] = mapped_column(Timestamp)


class DiscoveryTask(Base):
    """A cycle (parent) or one account poll (child).

    `region_results` maps a region to its outcome:
    `{"status": ..., "added": {"enis": 5, ...}, "updated": {...},
    "removed": {...}, "error": ..., "kind": ...}`.
    """

    __tablename__ = "discovery_tasks"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("discovery_tasks.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    cycle_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(AccountIdType)
    regions: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), server_default=text("'{}'")
    )
    status: Mapped[str] = mapped_column(String(32), server_default="pending")
    initiated_by: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    region_results: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    children_total: Mapped[int] = mapped_column(Integer, server_default="0")
    children_succeeded: Mapped[int] = mapped_column(Integer, server_default="0")
    children_partially_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    children_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    children_skipped: Mapped[int] = mapped_column(Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    announced: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    """False while the row exists only because a later event came first."""
    not_before: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'partially_failed', "
            "'failed', 'skipped', 'cancelled', 'superseded')",
            name="known_status",
        ),
        CheckConstraint("kind IN ('cycle', 'account_poll')", name="known_kind"),
        Index("ix_discovery_tasks_created_at_id", "created_at", "id"),
        Index("ix_discovery_tasks_parent_id", "parent_id"),
        Index(
            "ix_discovery_tasks_unfinished_account",
            "account_id",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )


class ApiToken(Base):
    """An API bearer token, stored only as its SHA-256."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("role IN ('reader', 'admin')", name="known_role"),
    )


# --- Resources -------------------------------------------------------------------


class ResourceColumns:
    """Columns every resource row has."""

    region: Mapped[str] = mapped_column(String(32))
    owner_account_id: Mapped[str] = mapped_column(AccountIdType)
    reported_by: Mapped[str] = mapped_column(AccountIdType)
    seen_by: Mapped[list[str]] = mapped_column(ARRAY(String(12)))
    tags: Mapped[dict[str, str]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    first_seen_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Vpc(ResourceColumns, Base):
    __tablename__ = "vpcs"

    vpc_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(32))
    cidr_block: Mapped[str | None] = mapped_column(CIDR)
    cidr_blocks: Mapped[list[str]] = mapped_column(
        ARRAY(CIDR), server_default=text("'{}'")
    )
    ipv6_cidr_blocks: Mapped[list[str]] = mapped_column(
        ARRAY(CIDR), server_default=text("'{}'")
    )
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    dhcp_options_id: Mapped[str | None] = mapped_column(String(64))
    instance_tenancy: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_vpcs_owner_region", "owner_account_id", "region", "vpc_id"),
        Index(
            "ix_vpcs_cidr_block",
            "cidr_block",
            postgresql_using="gist",
            postgresql_ops={"cidr_block": "inet_ops"},
        ),
    )


class Subnet(ResourceColumns, Base):
    __tablename__ = "subnets"

    subnet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vpc_id: Mapped[str] = mapped_column(String(64))
    availability_zone: Mapped[str | None] = mapped_column(String(64))
    availability_zone_id: Mapped[str | None] = mapped_column(String(64))
    cidr_block: Mapped[str | None] = mapped_column(CIDR)
    ipv6_cidr_blocks: Mapped[list[str]] = mapped_column(
        ARRAY(CIDR), server_default=text("'{}'")
    )
    state: Mapped[str | None] = mapped_column(String(32))
    available_ip_address_count: Mapped[int | None] = mapped_column(Integer)
    map_public_ip_on_launch: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false")
    )
    default_for_az: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    subnet_arn: Mapped[str | None] = mapped_column(String(2048))

    __table_args__ = (
        Index("ix_subnets_vpc_id", "vpc_id", "subnet_id"),
        Index("ix_subnets_owner_region", "owner_account_id", "region", "subnet_id"),
        Index(
            "ix_subnets_cidr_block",
            "cidr_block",
            postgresql_using="gist",
            postgresql_ops={"cidr_block": "inet_ops"},
        ),
    )


class SecurityGroup(ResourceColumns, Base):
    __tablename__ = "security_groups"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(255))
    vpc_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_security_groups_vpc_id", "vpc_id", "group_id"),
        Index(
            "ix_security_groups_owner_region", "owner_account_id", "region", "group_id"
        ),
    )


class SecurityGroupRule(Base):
    """A rule; replaced with its group's rules whenever a snapshot has the group."""

    __tablename__ = "security_group_rules"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("security_groups.group_id", ondelete="CASCADE")
    )
    group_owner_id: Mapped[str | None] = mapped_column(AccountIdType)
    is_egress: Mapped[bool] = mapped_column(Boolean)
    ip_protocol: Mapped[str] = mapped_column(String(16))
    from_port: Mapped[int | None] = mapped_column(Integer)
    to_port: Mapped[int | None] = mapped_column(Integer)
    cidr_ipv4: Mapped[str | None] = mapped_column(CIDR)
    cidr_ipv6: Mapped[str | None] = mapped_column(CIDR)
    prefix_list_id: Mapped[str | None] = mapped_column(String(64))
    referenced_group_id: Mapped[str | None] = mapped_column(String(64))
    referenced_group_owner_id: Mapped[str | None] = mapped_column(AccountIdType)
    referenced_vpc_id: Mapped[str | None] = mapped_column(String(64))
    referenced_vpc_peering_connection_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )

    __table_args__ = (
        Index("ix_security_group_rules_group_id", "group_id"),
        Index("ix_security_group_rules_referenced_group_id", "referenced_group_id"),
    )


class Eni(ResourceColumns, Base):
    __tablename__ = "enis"

    eni_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vpc_id: Mapped[str | None] = mapped_column(String(64))
    subnet_id: Mapped[str | None] = mapped_column(String(64))
    availability_zone: Mapped[str | None] = mapped_column(String(64))
    interface_type: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    mac_address: Mapped[str | None] = mapped_column(MACADDR)
    private_ip: Mapped[str | None] = mapped_column(INET)
    private_dns_name: Mapped[str | None] = mapped_column(String(255))
    requester_id: Mapped[str | None] = mapped_column(String(255))
    requester_managed: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false")
    )
    source_dest_check: Mapped[bool | None] = mapped_column(Boolean)
    attachment_id: Mapped[str | None] = mapped_column(String(64))
    attachment_instance_id: Mapped[str | None] = mapped_column(String(64))
    attachment_instance_owner_id: Mapped[str | None] = mapped_column(String(64))
    attachment_device_index: Mapped[int | None] = mapped_column(Integer)
    attachment_network_card_index: Mapped[int | None] = mapped_column(Integer)
    attachment_status: Mapped[str | None] = mapped_column(String(32))
    attachment_attach_time: Mapped[datetime | None] = mapped_column(Timestamp)
    attachment_delete_on_termination: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_enis_owner_region", "owner_account_id", "region", "eni_id"),
        Index("ix_enis_vpc_id", "vpc_id", "eni_id"),
        Index("ix_enis_subnet_id", "subnet_id", "eni_id"),
        Index("ix_enis_attachment_instance_id", "attachment_instance_id"),
    )


class EniAddress(Base):
    """An address of an ENI, or a prefix delegated to it.

    `kind` is one of `private_ipv4`, `public_ipv4`, `ipv6`, `ipv4_prefix`,
    `ipv6_prefix`. A public address names the private one it maps to. Host
    addresses are stored with a full mask, prefixes with theirs, so one GiST
    index answers both "who has this IP" (`address >>= ip`) and "what is
    inside this CIDR" (`address <<= cidr`).
    """

    __tablename__ = "eni_addresses"

    eni_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("enis.eni_id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(INET, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    is_primary: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    private_address: Mapped[str | None] = mapped_column(INET)
    private_dns_name: Mapped[str | None] = mapped_column(String(255))
    public_dns_name: Mapped[str | None] = mapped_column(String(255))
    public_ip_owner_id: Mapped[str | None] = mapped_column(String(64))
    allocation_id: Mapped[str | None] = mapped_column(String(64))
    association_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(
            "kind IN ('private_ipv4', 'public_ipv4', 'ipv6', 'ipv4_prefix', "
            "'ipv6_prefix')",
            name="known_kind",
        ),
        Index(
            "ix_eni_addresses_address_gist",
            "address",
            postgresql_using="gist",
            postgresql_ops={"address": "inet_ops"},
        ),
        Index("ix_eni_addresses_address", "address"),
    )


class EniSecurityGroup(Base):
    """The security groups of an ENI; the group may be another account's."""

    __tablename__ = "eni_security_groups"

    eni_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("enis.eni_id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_eni_security_groups_group_id", "group_id"),)


class Ec2Instance(ResourceColumns, Base):
    __tablename__ = "ec2_instances"

    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_type: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(32))
    vpc_id: Mapped[str | None] = mapped_column(String(64))
    subnet_id: Mapped[str | None] = mapped_column(String(64))
    availability_zone: Mapped[str | None] = mapped_column(String(64))
    private_ip: Mapped[str | None] = mapped_column(INET)
    public_ip: Mapped[str | None] = mapped_column(INET)
    private_dns_name: Mapped[str | None] = mapped_column(String(255))
    public_dns_name: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(64))
    launch_time: Mapped[datetime | None] = mapped_column(Timestamp)
    platform: Mapped[str | None] = mapped_column(String(64))
    architecture: Mapped[str | None] = mapped_column(String(32))
    key_name: Mapped[str | None] = mapped_column(String(255))
    iam_instance_profile_arn: Mapped[str | None] = mapped_column(String(2048))
    eni_ids: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), server_default=text("'{}'")
    )

    __table_args__ = (
        Index(
            "ix_ec2_instances_owner_region", "owner_account_id", "region", "instance_id"
        ),
        Index("ix_ec2_instances_vpc_id", "vpc_id", "instance_id"),
        Index("ix_ec2_instances_subnet_id", "subnet_id", "instance_id"),
    )


RESOURCE_TABLES = (Vpc, Subnet, SecurityGroup, Eni, Ec2Instance)
