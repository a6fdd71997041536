"""Inventory reads: keyset pages, details by AWS id, and the IP lookup."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    any_,
    cast,
    exists,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import CIDR, JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.api.errors import invalid
from services.api.pagination import decode_cursor, encode_cursor, rows_at_most
from services.api.schemas import (
    EniOut,
    InstanceOut,
    IpLookup,
    IpMatch,
    SecurityGroupOut,
    SubnetOut,
    VpcOut,
)
from shared.db.models import (
    Ec2Instance,
    Eni,
    EniAddress,
    EniSecurityGroup,
    RegionPoll,
    SecurityGroup,
    Subnet,
    Vpc,
)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Table = type[Vpc] | type[Subnet] | type[SecurityGroup] | type[Eni] | type[Ec2Instance]
A = TypeVar("A", VpcOut, SubnetOut, SecurityGroupOut, EniOut, InstanceOut)


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


IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_ip(text: str) -> IpAddress:
    if "/" in text:
        raise invalid("address", "one address, not a CIDR: use /enis?cidr= for that")
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise invalid("address", f"{text!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise invalid("address", "drop the zone (%...) from the IPv6 address")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 on the wire
    return ip


def parse_cidr(text: str) -> IpNetwork:
    """A network; host bits are dropped (`10.1.2.3/16` means `10.1.0.0/16`)."""
    if "%" in text:
        raise invalid("cidr", "drop the zone (%...) from the IPv6 network")
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise invalid(
            "cidr", f"{text!r} is not an IPv4 or IPv6 CIDR such as 10.1.0.0/16"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def _last_seen(model: Table) -> Any:
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


# What rows carry from their child tables, as JSON built by PostgreSQL in the
# same statement: one round trip per answer instead of one per child table. Each
# takes the alias of the parent row.


def _eni_addresses(eni: str) -> str:
    return f"""(SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.is_primary DESC,
                                          x.kind, x.address), '[]')
                FROM eni_addresses x WHERE x.eni_id = {eni}.eni_id)"""


def _eni_group_refs(eni: str) -> str:
    return f"""(SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'group_id', l.group_id, 'group_name', g.group_name,
                    'owner_account_id', g.owner_account_id) ORDER BY l.group_id), '[]')
                FROM eni_security_groups l LEFT JOIN security_groups g USING (group_id)
                WHERE l.eni_id = {eni}.eni_id)"""


def _eni_attachment(eni: str) -> str:
    return f"""(CASE WHEN {eni}.attachment_id IS NOT NULL
                       OR {eni}.attachment_instance_id IS NOT NULL
                THEN jsonb_build_object(
                  'attachment_id', {eni}.attachment_id,
                  'instance_id', {eni}.attachment_instance_id,
                  'instance_owner_id', {eni}.attachment_instance_owner_id,
                  'device_index', {eni}.attachment_device_index,
                  'network_card_index', {eni}.attachment_network_card_index,
                  'status', {eni}.attachment_status,
                  'attach_time', {eni}.attachment_attach_time,
                  'delete_on_termination', {eni}.attachment_delete_on_termination)
                END)"""


def _group_rules(group: str) -> str:
    return f"""(SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.is_egress, r.rule_id),
                                '[]')
                FROM security_group_rules r WHERE r.group_id = {group}.group_id)"""


def _nested(name: str, sql: str) -> Any:
    return literal_column(sql, type_=JSONB).label(name)


NESTED: dict[str, list[Any]] = {
    "enis": [
        _nested("attachment", _eni_attachment("enis")),
        _nested("addresses", _eni_addresses("enis")),
        _nested("security_groups", _eni_group_refs("enis")),
    ],
    "security_groups": [_nested("rules", _group_rules("security_groups"))],
}


@dataclass(frozen=True)
class Kind(Generic[A]):
    """A kind of resource: its table, its key (the AWS id) and its answer."""

    model: Table
    key: InstrumentedAttribute[str]
    out: type[A]

    @cached_property
    def _list(self) -> TypeAdapter[list[A]]:
        return TypeAdapter(list[self.out])  # type: ignore[name-defined]

    def select(self) -> Select[Any]:
        """Its rows with their last-seen time and what they carry from child tables."""
        name = self.model.__tablename__
        return select(
            self.model.__table__, _last_seen(self.model), *NESTED.get(name, [])
        )

    async def fetch(self, session: AsyncSession, statement: Select[Any]) -> list[A]:
        """The answers for `statement`'s rows, in key order.

        PostgreSQL turns the rows into one JSON document and pydantic checks it:
        no row objects, no JSON decoded and encoded again on the way.
        """
        rows = statement.subquery("r")
        key: ColumnElement[Any] = literal_column(f"r.{self.key.key}")
        document = func.json_agg(aggregate_order_by(rows.table_valued(), key))
        found = (await session.execute(select(cast(document, Text)))).scalar_one()
        return [] if found is None else self._list.validate_json(found)


VPCS = Kind(Vpc, Vpc.vpc_id, VpcOut)
SUBNETS = Kind(Subnet, Subnet.subnet_id, SubnetOut)
SECURITY_GROUPS = Kind(SecurityGroup, SecurityGroup.group_id, SecurityGroupOut)
ENIS = Kind(Eni, Eni.eni_id, EniOut)
INSTANCES = Kind(Ec2Instance, Ec2Instance.instance_id, InstanceOut)


async def page(
    session: AsyncSession,
    kind: Kind[A],
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> tuple[list[A], str | None]:
    """Answers in key order after the cursor, and the cursor of the next page."""
    scope = kind.model.__tablename__
    statement = kind.select().where(*filters.conditions)
    if cursor is not None:
        (after,) = decode_cursor(scope, cursor, 1)
        statement = statement.where(kind.key > after)
    statement = statement.order_by(kind.key).limit(rows_at_most(limit + 1))
    items = await kind.fetch(session, statement)

    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(scope, [getattr(items[-1], kind.key.key)])


async def detail(session: AsyncSession, kind: Kind[A], key: str) -> A | None:
    """One resource by its AWS id, or None."""
    found = await kind.fetch(session, kind.select().where(kind.key == key))
    return found[0] if found else None


# --- ENI-specific filters and the IP lookup ------------------------------------------


def has_public_ip(value: bool) -> ColumnElement[bool]:
    public = exists().where(
        EniAddress.eni_id == Eni.eni_id, EniAddress.kind == "public_ipv4"
    )
    return public if value else ~public


def in_cidr(network: IpNetwork) -> ColumnElement[bool]:
    inside = select(EniAddress.eni_id).where(
        # Overlaps: an address inside it, or a delegated prefix that shares
        # addresses with it (a /28 holds addresses of the /30 inside it).
        EniAddress.address.op("&&")(cast(str(network), CIDR))
    )
    return Eni.eni_id.in_(inside)


def in_group(group_id: str) -> ColumnElement[bool]:
    return Eni.eni_id.in_(
        select(EniSecurityGroup.eni_id).where(EniSecurityGroup.group_id == group_id)
    )


def _seen(alias: str) -> str:
    """SQL for a row's last-seen time (see `_last_seen`)."""
    return (
        "(SELECT max(rp.last_applied_at) FROM region_polls rp"
        f" WHERE rp.region = {alias}.region AND rp.account_id = ANY({alias}.seen_by))"
    )


def _row(alias: str) -> str:
    """SQL for a row as JSON, with its last-seen time."""
    return f"to_jsonb({alias}) || jsonb_build_object('last_seen_at', {_seen(alias)})"


# One round trip for the whole answer, built as JSON by PostgreSQL and checked by
# `IpMatch` on its way out: the lookup is the hottest read there is.
IP_LOOKUP_SQL = text(
    f"""
WITH hits AS (
  SELECT DISTINCT ON (a.eni_id) a.eni_id, a.address, a.kind
  FROM eni_addresses a
  WHERE a.address >>= CAST(:ip AS inet)
  ORDER BY a.eni_id, masklen(a.address) DESC
)
SELECT coalesce(jsonb_agg(jsonb_build_object(
  'matched_address', h.address,
  'matched_kind', h.kind,
  'eni', {_row("e")} || jsonb_build_object(
           'attachment', {_eni_attachment("e")},
           'addresses', {_eni_addresses("e")},
           'security_groups', {_eni_group_refs("e")}),
  'security_groups', (
    SELECT coalesce(jsonb_agg({_row("g")} || jsonb_build_object(
                                'rules', {_group_rules("g")}) ORDER BY g.group_id),
                    '[]')
    FROM security_groups g
    WHERE g.group_id IN (SELECT group_id FROM eni_security_groups
                         WHERE eni_id = e.eni_id)),
  'instance', (SELECT {_row("i")} FROM ec2_instances i
               WHERE i.instance_id = e.attachment_instance_id),
  'subnet', (SELECT {_row("s")} FROM subnets s WHERE s.subnet_id = e.subnet_id),
  'vpc', (SELECT {_row("v")} FROM vpcs v WHERE v.vpc_id = e.vpc_id),
  'owner', jsonb_build_object(
             'account_id', e.owner_account_id,
             'account_name', (SELECT account_name FROM accounts
                              WHERE account_id = e.owner_account_id)))
  ORDER BY masklen(h.address) DESC, e.eni_id), '[]')::text
FROM hits h JOIN enis e USING (eni_id)
"""
)

_MATCHES = TypeAdapter(list[IpMatch])


async def lookup_ip(session: AsyncSession, ip: IpAddress) -> IpLookup:
    """Every ENI holding `ip` as an address or inside a delegated prefix."""
    found = (await session.execute(IP_LOOKUP_SQL, {"ip": str(ip)})).scalar_one()
    return IpLookup(address=str(ip), matches=_MATCHES.validate_json(found))
