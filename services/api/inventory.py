"""Inventory reads: keyset pages, details by AWS id, and the IP lookup."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    Select,
    any_,
    cast,
    exists,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import CIDR, INET
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.api.errors import invalid
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import (
    AddressOut,
    AttachmentOut,
    EniOut,
    GroupRef,
    InstanceOut,
    IpLookup,
    IpMatch,
    OwnerOut,
    RuleOut,
    SecurityGroupOut,
    SubnetOut,
    VpcOut,
)
from shared.db.models import (
    Account,
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

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
M = TypeVar("M", Vpc, Subnet, SecurityGroup, Eni, Ec2Instance)


@dataclass
class Filters:
    """Conditions of a list, gathered from its query parameters."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)

    def equal(self, column: InstrumentedAttribute[Any], value: object) -> None:
        if value is not None:
            self.conditions.append(column == value)

    def tags(self, column: InstrumentedAttribute[Any], tags: list[str] | None) -> None:
        """`Key=Value` matches that value; a bare `Key` matches any value."""
        for tag in tags or []:
            key, has_value, value = tag.partition("=")
            if not key:
                raise invalid("tag", "use Key=Value, or Key alone")
            if has_value:
                self.conditions.append(column.contains({key: value}))
            else:
                self.conditions.append(column.has_key(key))


def parse_ip(text: str) -> IpAddress:
    if "/" in text:
        raise invalid("address", "one address, not a CIDR: use /enis?cidr= for that")
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise invalid("address", f"{text!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise invalid("address", "drop the zone (%...) from the IPv6 address")
    return ip


def parse_cidr(text: str) -> IpNetwork:
    """A network; host bits are dropped (`10.1.2.3/16` means `10.1.0.0/16`)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise invalid(
            "cidr", f"{text!r} is not an IPv4 or IPv6 CIDR such as 10.1.0.0/16"
        ) from None


def _last_seen(model: type[M]) -> Any:
    """The latest applied snapshot among the accounts that see the row."""
    return (
        select(func.max(RegionPoll.last_applied_at))
        .where(
            RegionPoll.region == model.region,
            RegionPoll.account_id == any_(model.seen_by),
        )
        .correlate(model)
        .scalar_subquery()
        .label("last_seen_at")
    )


def _columns(row: object) -> dict[str, Any]:
    mapper = inspect(type(row))
    return {attr.key: getattr(row, attr.key) for attr in mapper.column_attrs}


async def _rows(session: AsyncSession, statement: Select[Any]) -> list[dict[str, Any]]:
    result = await session.execute(statement)
    return [{**_columns(obj), "last_seen_at": seen} for obj, seen in result.all()]


async def page(
    session: AsyncSession,
    model: type[M],
    key: InstrumentedAttribute[str],
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows in key order after the cursor, and the cursor of the next page."""
    scope = model.__tablename__
    statement = select(model, _last_seen(model)).where(*filters.conditions)
    if cursor is not None:
        (after,) = decode_cursor(scope, cursor, 1)
        statement = statement.where(key > after)
    rows = await _rows(session, statement.order_by(key).limit(limit + 1))

    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(scope, [rows[-1][key.key]])


async def by_ids(
    session: AsyncSession,
    model: type[M],
    key: InstrumentedAttribute[str],
    ids: Iterable[str],
) -> list[dict[str, Any]]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    statement = select(model, _last_seen(model)).where(key.in_(wanted)).order_by(key)
    return await _rows(session, statement)


# --- Building the answers ------------------------------------------------------------


def vpcs_out(rows: Sequence[dict[str, Any]]) -> list[VpcOut]:
    return [VpcOut.model_validate(row) for row in rows]


def subnets_out(rows: Sequence[dict[str, Any]]) -> list[SubnetOut]:
    return [SubnetOut.model_validate(row) for row in rows]


def instances_out(rows: Sequence[dict[str, Any]]) -> list[InstanceOut]:
    return [InstanceOut.model_validate(row) for row in rows]


async def groups_out(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[SecurityGroupOut]:
    """Security groups with their rules, ingress first."""
    ids = [row["group_id"] for row in rows]
    rules: dict[str, list[RuleOut]] = defaultdict(list)
    if ids:
        result = await session.scalars(
            select(SecurityGroupRule)
            .where(SecurityGroupRule.group_id.in_(ids))
            .order_by(
                SecurityGroupRule.group_id,
                SecurityGroupRule.is_egress,
                SecurityGroupRule.rule_id,
            )
        )
        for rule in result:
            rules[rule.group_id].append(RuleOut.model_validate(rule))
    return [
        SecurityGroupOut.model_validate({**row, "rules": rules[row["group_id"]]})
        for row in rows
    ]


async def enis_out(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[EniOut]:
    """ENIs with their addresses (primary first) and security groups."""
    ids = [row["eni_id"] for row in rows]
    addresses: dict[str, list[AddressOut]] = defaultdict(list)
    groups: dict[str, list[GroupRef]] = defaultdict(list)
    if ids:
        for address in await session.scalars(
            select(EniAddress)
            .where(EniAddress.eni_id.in_(ids))
            .order_by(
                EniAddress.eni_id,
                EniAddress.is_primary.desc(),
                EniAddress.kind,
                EniAddress.address,
            )
        ):
            addresses[address.eni_id].append(AddressOut.model_validate(address))
        links = await session.execute(
            select(
                EniSecurityGroup.eni_id,
                EniSecurityGroup.group_id,
                SecurityGroup.group_name,
                SecurityGroup.owner_account_id,
            )
            .outerjoin(
                SecurityGroup, SecurityGroup.group_id == EniSecurityGroup.group_id
            )
            .where(EniSecurityGroup.eni_id.in_(ids))
            .order_by(EniSecurityGroup.eni_id, EniSecurityGroup.group_id)
        )
        for eni_id, group_id, name, owner in links:
            groups[eni_id].append(
                GroupRef(group_id=group_id, group_name=name, owner_account_id=owner)
            )
    return [
        EniOut.model_validate(
            {
                **row,
                "attachment": _attachment(row),
                "addresses": addresses[row["eni_id"]],
                "security_groups": groups[row["eni_id"]],
            }
        )
        for row in rows
    ]


def _attachment(row: dict[str, Any]) -> AttachmentOut | None:
    if row["attachment_id"] is None and row["attachment_instance_id"] is None:
        return None
    return AttachmentOut(
        attachment_id=row["attachment_id"],
        instance_id=row["attachment_instance_id"],
        instance_owner_id=row["attachment_instance_owner_id"],
        device_index=row["attachment_device_index"],
        network_card_index=row["attachment_network_card_index"],
        status=row["attachment_status"],
        attach_time=row["attachment_attach_time"],
        delete_on_termination=row["attachment_delete_on_termination"],
    )


# --- ENI-specific filters and the IP lookup ------------------------------------------


def has_public_ip(value: bool) -> ColumnElement[bool]:
    public = exists().where(
        EniAddress.eni_id == Eni.eni_id, EniAddress.kind == "public_ipv4"
    )
    return public if value else ~public


def in_cidr(network: IpNetwork) -> ColumnElement[bool]:
    inside = select(EniAddress.eni_id).where(
        EniAddress.address.op("<<=")(cast(str(network), CIDR))
    )
    return Eni.eni_id.in_(inside)


def in_group(group_id: str) -> ColumnElement[bool]:
    return Eni.eni_id.in_(
        select(EniSecurityGroup.eni_id).where(EniSecurityGroup.group_id == group_id)
    )


async def lookup_ip(session: AsyncSession, ip: IpAddress) -> IpLookup:
    """Every ENI holding `ip` as an address or inside a delegated prefix."""
    found = await session.execute(
        select(EniAddress.eni_id, EniAddress.address, EniAddress.kind)
        .where(EniAddress.address.op(">>=")(cast(str(ip), INET)))
        .order_by(func.masklen(EniAddress.address).desc(), EniAddress.eni_id)
    )
    matched: dict[str, tuple[Any, str]] = {}
    for eni_id, address, kind in found:
        matched.setdefault(eni_id, (address, kind))
    if not matched:
        return IpLookup(address=str(ip), matches=[])

    enis = await enis_out(session, await by_ids(session, Eni, Eni.eni_id, matched))
    context = await _context(session, enis)
    matches = [
        IpMatch(
            matched_address=matched[eni.eni_id][0],
            matched_kind=matched[eni.eni_id][1],
            eni=eni,
            instance=context.instances.get(eni.attachment.instance_id or "")
            if eni.attachment
            else None,
            subnet=context.subnets.get(eni.subnet_id or ""),
            vpc=context.vpcs.get(eni.vpc_id or ""),
            security_groups=[
                context.groups[ref.group_id]
                for ref in eni.security_groups
                if ref.group_id in context.groups
            ],
            owner=OwnerOut(
                account_id=eni.owner_account_id,
                account_name=context.account_names.get(eni.owner_account_id),
            ),
        )
        for eni in enis
    ]
    return IpLookup(address=str(ip), matches=matches)


@dataclass
class _Context:
    instances: dict[str, InstanceOut]
    subnets: dict[str, SubnetOut]
    vpcs: dict[str, VpcOut]
    groups: dict[str, SecurityGroupOut]
    account_names: dict[str, str]


async def _context(session: AsyncSession, enis: list[EniOut]) -> _Context:
    instance_ids = [e.attachment.instance_id for e in enis if e.attachment]
    instances = instances_out(
        await by_ids(
            session,
            Ec2Instance,
            Ec2Instance.instance_id,
            [i for i in instance_ids if i],
        )
    )
    subnets = subnets_out(
        await by_ids(
            session,
            Subnet,
            Subnet.subnet_id,
            [e.subnet_id for e in enis if e.subnet_id],
        )
    )
    vpcs = vpcs_out(
        await by_ids(session, Vpc, Vpc.vpc_id, [e.vpc_id for e in enis if e.vpc_id])
    )
    group_rows = await by_ids(
        session,
        SecurityGroup,
        SecurityGroup.group_id,
        [ref.group_id for e in enis for ref in e.security_groups],
    )
    groups = await groups_out(session, group_rows)
    owners = {e.owner_account_id for e in enis}
    names = await session.execute(
        select(Account.account_id, Account.account_name).where(
            Account.account_id.in_(owners)
        )
    )
    return _Context(
        instances=_by(instances, "instance_id"),
        subnets=_by(subnets, "subnet_id"),
        vpcs=_by(vpcs, "vpc_id"),
        groups=_by(groups, "group_id"),
        account_names={account_id: name for account_id, name in names},
    )


B = TypeVar("B", bound=BaseModel)


def _by(items: list[B], key: str) -> dict[str, B]:
    return {getattr(item, key): item for item in items}
