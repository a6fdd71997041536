"""EC2 describe responses turned into the snapshot models, field by field.

Pure functions over the dictionaries boto3 returns, one page item at a time,
so a region's raw pages never need to be held together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.events import (
    Eni,
    EniAttachment,
    Instance,
    PrivateAddress,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)

Item = Mapping[str, Any]

GONE_INSTANCE_STATES = frozenset({"terminated"})
"""AWS keeps listing these for a while after they are gone."""

_LIVE_ASSOCIATION_STATES = frozenset({"associated", "associating"})


def tags(item: Item, key: str = "Tags") -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in item.get(key) or []}


def _cidrs(associations: Iterable[Item], key: str) -> list[str]:
    """CIDRs of the associations that are in use (not disassociated or failed)."""
    return [
        association[key]
        for association in associations
        if key in association
        and association.get(f"{key}State", {}).get("State", "associated")
        in _LIVE_ASSOCIATION_STATES
    ]


def vpc(item: Item) -> Vpc:
    return Vpc(
        vpc_id=item["VpcId"],
        owner_id=item["OwnerId"],
        state=item.get("State"),
        cidr_block=item.get("CidrBlock"),
        cidr_blocks=_cidrs(item.get("CidrBlockAssociationSet") or [], "CidrBlock"),
        ipv6_cidr_blocks=_cidrs(
            item.get("Ipv6CidrBlockAssociationSet") or [], "Ipv6CidrBlock"
        ),
        is_default=bool(item.get("IsDefault", False)),
        dhcp_options_id=item.get("DhcpOptionsId"),
        instance_tenancy=item.get("InstanceTenancy"),
        tags=tags(item),
    )


def subnet(item: Item) -> Subnet:
    return Subnet(
        subnet_id=item["SubnetId"],
        vpc_id=item["VpcId"],
        owner_id=item["OwnerId"],
        availability_zone=item.get("AvailabilityZone"),
        availability_zone_id=item.get("AvailabilityZoneId"),
        cidr_block=item.get("CidrBlock"),
        ipv6_cidr_blocks=_cidrs(
            item.get("Ipv6CidrBlockAssociationSet") or [], "Ipv6CidrBlock"
        ),
        state=item.get("State"),
        available_ip_address_count=item.get("AvailableIpAddressCount"),
        map_public_ip_on_launch=bool(item.get("MapPublicIpOnLaunch", False)),
        default_for_az=bool(item.get("DefaultForAz", False)),
        subnet_arn=item.get("SubnetArn"),
        tags=tags(item),
    )


def security_group_rule(item: Item) -> SecurityGroupRule:
    referenced = item.get("ReferencedGroupInfo") or {}
    return SecurityGroupRule(
        rule_id=item["SecurityGroupRuleId"],
        group_id=item["GroupId"],
        group_owner_id=item.get("GroupOwnerId"),
        is_egress=bool(item.get("IsEgress", False)),
        ip_protocol=item.get("IpProtocol", "-1"),
        from_port=item.get("FromPort"),
        to_port=item.get("ToPort"),
        cidr_ipv4=item.get("CidrIpv4"),
        cidr_ipv6=item.get("CidrIpv6"),
        prefix_list_id=item.get("PrefixListId"),
        referenced_group_id=referenced.get("GroupId"),
        referenced_group_owner_id=referenced.get("UserId"),
        referenced_vpc_id=referenced.get("VpcId"),
        referenced_vpc_peering_connection_id=referenced.get("VpcPeeringConnectionId"),
        description=item.get("Description") or None,
        tags=tags(item),
    )


def security_group(item: Item, rules: list[SecurityGroupRule]) -> SecurityGroup:
    return SecurityGroup(
        group_id=item["GroupId"],
        group_name=item.get("GroupName", ""),
        owner_id=item["OwnerId"],
        vpc_id=item.get("VpcId"),
        description=item.get("Description"),
        tags=tags(item),
        rules=rules,
    )


def _private_address(item: Item) -> PrivateAddress:
    association = item.get("Association") or {}
    return PrivateAddress(
        address=item["PrivateIpAddress"],
        is_primary=bool(item.get("Primary", False)),
        private_dns_name=item.get("PrivateDnsName") or None,
        public_ip=association.get("PublicIp"),
        public_dns_name=association.get("PublicDnsName") or None,
        public_ip_owner_id=association.get("IpOwnerId"),
        allocation_id=association.get("AllocationId"),
        association_id=association.get("AssociationId"),
        carrier_ip=association.get("CarrierIp"),
    )


def _private_addresses(item: Item) -> list[PrivateAddress]:
    """Every private address; the top-level association belongs to the primary.

    AWS repeats the primary's association at the top of the ENI; some shapes
    (and moto) give it only there, or give the primary address only there.
    """
    primary = item.get("PrivateIpAddress")
    top: Item = {
        "PrivateIpAddress": primary,
        "Primary": True,
        "PrivateDnsName": item.get("PrivateDnsName"),
        "Association": item.get("Association"),
    }
    listed = [
        address
        for address in item.get("PrivateIpAddresses") or []
        if address.get("PrivateIpAddress")
    ]
    if primary and all(a["PrivateIpAddress"] != primary for a in listed):
        listed.insert(0, top)
    return [
        _private_address(
            {**address, "Association": top["Association"]}
            if address["PrivateIpAddress"] == primary and not address.get("Association")
            else address
        )
        for address in listed
    ]


def _attachment(item: Item | None) -> EniAttachment | None:
    if not item:
        return None
    return EniAttachment(
        attachment_id=item.get("AttachmentId"),
        instance_id=item.get("InstanceId"),
        instance_owner_id=item.get("InstanceOwnerId"),
        device_index=item.get("DeviceIndex"),
        network_card_index=item.get("NetworkCardIndex"),
        status=item.get("Status"),
        attach_time=item.get("AttachTime"),
        delete_on_termination=item.get("DeleteOnTermination"),
    )


def eni(item: Item) -> Eni:
    return Eni(
        eni_id=item["NetworkInterfaceId"],
        owner_id=item["OwnerId"],
        vpc_id=item.get("VpcId"),
        subnet_id=item.get("SubnetId"),
        availability_zone=item.get("AvailabilityZone"),
        interface_type=item.get("InterfaceType"),
        status=item.get("Status"),
        description=item.get("Description") or None,
        mac_address=item.get("MacAddress"),
        private_dns_name=item.get("PrivateDnsName") or None,
        requester_id=item.get("RequesterId"),
        requester_managed=bool(item.get("RequesterManaged", False)),
        source_dest_check=item.get("SourceDestCheck"),
        attachment=_attachment(item.get("Attachment")),
        private_addresses=_private_addresses(item),
        ipv6_addresses=[
            address["Ipv6Address"]
            for address in item.get("Ipv6Addresses") or []
            if address.get("Ipv6Address")
        ],
        ipv4_prefixes=[
            prefix["Ipv4Prefix"]
            for prefix in item.get("Ipv4Prefixes") or []
            if prefix.get("Ipv4Prefix")
        ],
        ipv6_prefixes=[
            prefix["Ipv6Prefix"]
            for prefix in item.get("Ipv6Prefixes") or []
            if prefix.get("Ipv6Prefix")
        ],
        group_ids=[group["GroupId"] for group in item.get("Groups") or []],
        tags=tags(item, "TagSet"),
    )


def instances(reservation: Item) -> list[Instance]:
    """The instances of one reservation that still exist (not `terminated`)."""
    owner_id = reservation["OwnerId"]
    return [
        _instance(item, owner_id)
        for item in reservation.get("Instances") or []
        if (item.get("State") or {}).get("Name") not in GONE_INSTANCE_STATES
    ]


def _instance(item: Item, owner_id: str) -> Instance:
    interfaces = sorted(
        item.get("NetworkInterfaces") or [],
        key=lambda interface: (
            (interface.get("Attachment") or {}).get("NetworkCardIndex", 0),
            (interface.get("Attachment") or {}).get("DeviceIndex", 0),
        ),
    )
    return Instance(
        instance_id=item["InstanceId"],
        owner_id=owner_id,
        instance_type=item.get("InstanceType"),
        state=(item.get("State") or {}).get("Name"),
        vpc_id=item.get("VpcId"),
        subnet_id=item.get("SubnetId"),
        availability_zone=(item.get("Placement") or {}).get("AvailabilityZone"),
        private_ip=item.get("PrivateIpAddress") or None,
        public_ip=item.get("PublicIpAddress") or None,
        private_dns_name=item.get("PrivateDnsName") or None,
        public_dns_name=item.get("PublicDnsName") or None,
        image_id=item.get("ImageId"),
        launch_time=item.get("LaunchTime"),
        platform=item.get("Platform") or item.get("PlatformDetails"),
        architecture=item.get("Architecture"),
        key_name=item.get("KeyName"),
        iam_instance_profile_arn=(item.get("IamInstanceProfile") or {}).get("Arn"),
        eni_ids=[interface["NetworkInterfaceId"] for interface in interfaces],
        tags=tags(item),
    )
