"""A region snapshot as rows for the staging tables, deduplicated by key.

The same VPC or subnet may come twice in one snapshot (two pages, or the
owner's and a participant's view); the last one wins, so each key is staged
once and no statement ever touches a row twice.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from shared.events import Eni, Instance, RegionSnapshot, SecurityGroup, Subnet, Vpc

Row = tuple[Any, ...]


def _text(value: object | None) -> str | None:
    return None if value is None else _address(value)


def _address(value: object) -> str:
    """An address or network as PostgreSQL reads it (addresses formatted in C)."""
    if isinstance(value, IPv4Address):
        return socket.inet_ntoa(value.packed)
    if isinstance(value, IPv6Address):
        return socket.inet_ntop(socket.AF_INET6, value.packed)
    return str(value)


def _texts(values: Iterable[object]) -> list[str]:
    return [str(value) for value in values]


def _tags(tags: dict[str, str]) -> str:
    return json.dumps(tags, sort_keys=True) if tags else "{}"


@dataclass
class StagedRows:
    """Rows per staging table, each key once."""

    vpcs: dict[str, Row] = field(default_factory=dict)
    subnets: dict[str, Row] = field(default_factory=dict)
    security_groups: dict[str, Row] = field(default_factory=dict)
    security_group_rules: dict[str, Row] = field(default_factory=dict)
    enis: dict[str, Row] = field(default_factory=dict)
    eni_addresses: dict[tuple[str, str], Row] = field(default_factory=dict)
    eni_security_groups: dict[tuple[str, str], Row] = field(default_factory=dict)
    ec2_instances: dict[str, Row] = field(default_factory=dict)

    def table(self, name: str) -> list[Row]:
        rows: dict[Any, Row] = getattr(self, name)
        return list(rows.values())


def stage(snapshot: RegionSnapshot) -> StagedRows:
    """Turn a snapshot into deduplicated rows, in the staging tables' column order."""
    staged = StagedRows()
    for vpc in snapshot.vpcs:
        staged.vpcs[vpc.vpc_id] = _vpc(vpc)
    for subnet in snapshot.subnets:
        staged.subnets[subnet.subnet_id] = _subnet(subnet)
    for group in snapshot.security_groups:
        _add_group(staged, group)
    for eni in snapshot.enis:
        _add_eni(staged, eni)
    for instance in snapshot.instances:
        staged.ec2_instances[instance.instance_id] = _instance(instance)
    return staged


def _vpc(vpc: Vpc) -> Row:
    return (
        vpc.vpc_id,
        vpc.owner_id,
        vpc.state,
        _text(vpc.cidr_block),
        _texts(vpc.cidr_blocks),
        _texts(vpc.ipv6_cidr_blocks),
        vpc.is_default,
        vpc.dhcp_options_id,
        vpc.instance_tenancy,
        _tags(vpc.tags),
    )


def _subnet(subnet: Subnet) -> Row:
    return (
        subnet.subnet_id,
        subnet.owner_id,
        subnet.vpc_id,
        subnet.availability_zone,
        subnet.availability_zone_id,
        _text(subnet.cidr_block),
        _texts(subnet.ipv6_cidr_blocks),
        subnet.state,
        subnet.available_ip_address_count,
        subnet.map_public_ip_on_launch,
        subnet.default_for_az,
        subnet.subnet_arn,
        _tags(subnet.tags),
    )


def _add_group(staged: StagedRows, group: SecurityGroup) -> None:
    if group.group_id in staged.security_groups:
        _forget_rules(staged, group.group_id)
    staged.security_groups[group.group_id] = (
        group.group_id,
        group.owner_id,
        group.group_name,
        group.vpc_id,
        group.description,
        _tags(group.tags),
    )
    for rule in group.rules:
        staged.security_group_rules[rule.rule_id] = (
            rule.rule_id,
            group.group_id,
            rule.group_owner_id or group.owner_id,
            rule.is_egress,
            rule.ip_protocol,
            rule.from_port,
            rule.to_port,
            _text(rule.cidr_ipv4),
            _text(rule.cidr_ipv6),
            rule.prefix_list_id,
            rule.referenced_group_id,
            rule.referenced_group_owner_id,
            rule.referenced_vpc_id,
            rule.referenced_vpc_peering_connection_id,
            rule.description,
            _tags(rule.tags),
        )


def _add_eni(staged: StagedRows, eni: Eni) -> None:
    if eni.eni_id in staged.enis:
        _forget_eni_children(staged, eni.eni_id)
    attachment = eni.attachment
    primary = next((a for a in eni.private_addresses if a.is_primary), None)
    staged.enis[eni.eni_id] = (
        eni.eni_id,
        eni.owner_id,
        eni.vpc_id,
        eni.subnet_id,
        eni.availability_zone,
        eni.interface_type,
        eni.status,
        eni.description,
        eni.mac_address,
        _text(primary.address) if primary else None,
        eni.private_dns_name,
        eni.requester_id,
        eni.requester_managed,
        eni.source_dest_check,
        attachment.attachment_id if attachment else None,
        attachment.instance_id if attachment else None,
        attachment.instance_owner_id if attachment else None,
        attachment.device_index if attachment else None,
        attachment.network_card_index if attachment else None,
        attachment.status if attachment else None,
        attachment.attach_time if attachment else None,
        attachment.delete_on_termination if attachment else None,
        _tags(eni.tags),
    )
    addresses = staged.eni_addresses
    for private in eni.private_addresses:
        address = _address(private.address)
        addresses[(eni.eni_id, address)] = (
            eni.eni_id,
            address,
            "private_ipv4",
            private.is_primary,
            None,
            private.private_dns_name,
            None,
            None,
            None,
            None,
        )
        if private.public_ip is not None:
            public = _address(private.public_ip)
            addresses[(eni.eni_id, public)] = (
                eni.eni_id,
                public,
                "public_ipv4",
                private.is_primary,
                address,
                None,
                private.public_dns_name,
                private.public_ip_owner_id,
                private.allocation_id,
                private.association_id,
            )
    for kind, values in (
        ("ipv6", eni.ipv6_addresses),
        ("ipv4_prefix", eni.ipv4_prefixes),
        ("ipv6_prefix", eni.ipv6_prefixes),
    ):
        for value in values:
            text = _address(value)
            addresses[(eni.eni_id, text)] = (
                eni.eni_id,
                text,
                kind,
                False,
                None,
                None,
                None,
                None,
                None,
                None,
            )
    for group_id in eni.group_ids:
        staged.eni_security_groups[(eni.eni_id, group_id)] = (eni.eni_id, group_id)


def _forget_rules(staged: StagedRows, group_id: str) -> None:
    """A group seen again replaces its rules as a whole."""
    rules = staged.security_group_rules
    for rule_id in [key for key, row in rules.items() if row[1] == group_id]:
        del rules[rule_id]


def _forget_eni_children(staged: StagedRows, eni_id: str) -> None:
    for rows in (staged.eni_addresses, staged.eni_security_groups):
        for key in [key for key in rows if key[0] == eni_id]:
            del rows[key]


def _instance(instance: Instance) -> Row:
    return (
        instance.instance_id,
        instance.owner_id,
        instance.instance_type,
        instance.state,
        instance.vpc_id,
        instance.subnet_id,
        instance.availability_zone,
        _text(instance.private_ip),
        _text(instance.public_ip),
        instance.private_dns_name,
        instance.public_dns_name,
        instance.image_id,
        instance.launch_time,
        instance.platform,
        instance.architecture,
        instance.key_name,
        instance.iam_instance_profile_arn,
        list(instance.eni_ids),
        _tags(instance.tags),
    )
