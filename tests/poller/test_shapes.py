"""Shapes moto cannot make, answered by botocore's Stubber (AWS's own model)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from botocore.stub import Stubber

from services.poller.aws import AwsAccess
from shared.events import RegionSnapshot
from tests.poller.fakes import poll_for

PARTICIPANT = "555555555555"
VPC_OWNER = "666666666666"
PEER = "777777777777"

SHARED_VPC: dict[str, Any] = {
    "VpcId": "vpc-shared",
    "OwnerId": VPC_OWNER,
    "State": "available",
    "CidrBlock": "10.0.0.0/16",
    "CidrBlockAssociationSet": [
        {"CidrBlock": "10.0.0.0/16", "CidrBlockState": {"State": "associated"}},
        {"CidrBlock": "100.64.0.0/16", "CidrBlockState": {"State": "disassociated"}},
    ],
    "Ipv6CidrBlockAssociationSet": [
        {
            "Ipv6CidrBlock": "2600:1f18:aaaa::/56",
            "Ipv6CidrBlockState": {"State": "associated"},
        }
    ],
    "IsDefault": False,
    "DhcpOptionsId": "dopt-1",
    "InstanceTenancy": "default",
}
SHARED_SUBNET: dict[str, Any] = {
    "SubnetId": "subnet-shared",
    "VpcId": "vpc-shared",
    "OwnerId": VPC_OWNER,
    "AvailabilityZone": "us-east-1a",
    "AvailabilityZoneId": "use1-az1",
    "CidrBlock": "10.0.1.0/24",
    "State": "available",
    "AvailableIpAddressCount": 200,
    "MapPublicIpOnLaunch": False,
    "DefaultForAz": False,
    "SubnetArn": f"arn:aws:ec2:us-east-1:{VPC_OWNER}:subnet/subnet-shared",
    "Tags": [{"Key": "Name", "Value": "shared-a"}],
}
IPV6_ONLY_SUBNET: dict[str, Any] = {
    "SubnetId": "subnet-v6",
    "VpcId": "vpc-shared",
    "OwnerId": VPC_OWNER,
    "Ipv6Native": True,
    "Ipv6CidrBlockAssociationSet": [
        {
            "Ipv6CidrBlock": "2600:1f18:aaaa:1::/64",
            "Ipv6CidrBlockState": {"State": "associated"},
        }
    ],
}
RULES: list[dict[str, Any]] = [
    {
        "SecurityGroupRuleId": "sgr-peer",
        "GroupId": "sg-app",
        "GroupOwnerId": PARTICIPANT,
        "IsEgress": False,
        "IpProtocol": "tcp",
        "FromPort": 443,
        "ToPort": 443,
        "ReferencedGroupInfo": {
            "GroupId": "sg-in-peer",
            "UserId": PEER,
            "VpcId": "vpc-peer",
            "VpcPeeringConnectionId": "pcx-1",
            "PeeringStatus": "active",
        },
        "Description": "from the peer's load balancer",
    },
    {
        "SecurityGroupRuleId": "sgr-pl",
        "GroupId": "sg-app",
        "GroupOwnerId": PARTICIPANT,
        "IsEgress": True,
        "IpProtocol": "-1",
        "FromPort": -1,
        "ToPort": -1,
        "PrefixListId": "pl-63a5400a",
    },
    {
        "SecurityGroupRuleId": "sgr-v6",
        "GroupId": "sg-app",
        "GroupOwnerId": PARTICIPANT,
        "IsEgress": False,
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "CidrIpv6": "::/0",
        "Tags": [{"Key": "why", "Value": "bastion"}],
    },
]
GROUP: dict[str, Any] = {
    "GroupId": "sg-app",
    "GroupName": "app",
    "OwnerId": PARTICIPANT,
    "VpcId": "vpc-shared",
    "Description": "app servers",
}
IPV6_ONLY_ENI: dict[str, Any] = {
    "NetworkInterfaceId": "eni-v6only",
    "OwnerId": PARTICIPANT,
    "SubnetId": "subnet-v6",
    "VpcId": "vpc-shared",
    "InterfaceType": "interface",
    "Status": "in-use",
    "PrivateIpAddresses": [],
    "Ipv6Addresses": [{"Ipv6Address": "2600:1f18:aaaa:1::10", "IsPrimaryIpv6": True}],
    "Ipv6Prefixes": [{"Ipv6Prefix": "2600:1f18:aaaa:1:8::/80"}],
    "Groups": [{"GroupId": "sg-app", "GroupName": "app"}],
    "RequesterManaged": False,
    "SourceDestCheck": True,
}
PREFIX_EIP_ENI: dict[str, Any] = {
    "NetworkInterfaceId": "eni-prefix",
    "OwnerId": PARTICIPANT,
    "SubnetId": "subnet-shared",
    "VpcId": "vpc-shared",
    "AvailabilityZone": "us-east-1a",
    "InterfaceType": "interface",
    "Status": "in-use",
    "MacAddress": "0a:00:00:00:00:01",
    "PrivateIpAddress": "10.0.1.10",
    "PrivateDnsName": "ip-10-0-1-10.ec2.internal",
    "Association": {
        "PublicIp": "198.51.100.7",
        "PublicDnsName": "ec2-198-51-100-7.compute-1.amazonaws.com",
        "IpOwnerId": PARTICIPANT,
        "AllocationId": "eipalloc-1",
        "AssociationId": "eipassoc-1",
    },
    "PrivateIpAddresses": [
        {
            "PrivateIpAddress": "10.0.1.10",
            "Primary": True,
            "PrivateDnsName": "ip-10-0-1-10.ec2.internal",
            "Association": {
                "PublicIp": "198.51.100.7",
                "PublicDnsName": "ec2-198-51-100-7.compute-1.amazonaws.com",
                "IpOwnerId": PARTICIPANT,
                "AllocationId": "eipalloc-1",
                "AssociationId": "eipassoc-1",
            },
        },
        {"PrivateIpAddress": "10.0.1.11", "Primary": False},
    ],
    "Ipv4Prefixes": [{"Ipv4Prefix": "10.0.1.16/28"}],
    "Attachment": {
        "AttachmentId": "eni-attach-1",
        "InstanceId": "i-app",
        "InstanceOwnerId": PARTICIPANT,
        "DeviceIndex": 0,
        "NetworkCardIndex": 0,
        "Status": "attached",
        "AttachTime": datetime(2026, 1, 2, tzinfo=UTC),
        "DeleteOnTermination": True,
    },
    "Groups": [{"GroupId": "sg-app", "GroupName": "app"}],
    "TagSet": [{"Key": "team", "Value": "payments"}],
    "RequesterManaged": False,
    "SourceDestCheck": True,
}
ENDPOINT_ENI: dict[str, Any] = {
    "NetworkInterfaceId": "eni-endpoint",
    "OwnerId": PARTICIPANT,
    "SubnetId": "subnet-shared",
    "VpcId": "vpc-shared",
    "InterfaceType": "vpc_endpoint",
    "RequesterId": "727180483921",
    "RequesterManaged": True,
    "PrivateIpAddress": "10.0.1.50",
    "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.1.50", "Primary": True}],
}
RESERVATIONS: list[dict[str, Any]] = [
    {
        "ReservationId": "r-1",
        "OwnerId": PARTICIPANT,
        "Instances": [
            {
                "InstanceId": "i-app",
                "InstanceType": "m7g.large",
                "State": {"Code": 16, "Name": "running"},
                "SubnetId": "subnet-shared",
                "VpcId": "vpc-shared",
                "PrivateIpAddress": "10.0.1.10",
                "PublicIpAddress": "198.51.100.7",
                "Placement": {"AvailabilityZone": "us-east-1a"},
                "IamInstanceProfile": {
                    "Arn": f"arn:aws:iam::{PARTICIPANT}:instance-profile/app",
                    "Id": "AIPA1",
                },
                "NetworkInterfaces": [
                    {
                        "NetworkInterfaceId": "eni-v6only",
                        "Attachment": {"DeviceIndex": 1, "NetworkCardIndex": 0},
                    },
                    {
                        "NetworkInterfaceId": "eni-prefix",
                        "Attachment": {"DeviceIndex": 0, "NetworkCardIndex": 0},
                    },
                ],
            },
            {
                "InstanceId": "i-gone",
                "State": {"Code": 48, "Name": "terminated"},
            },
            {
                "InstanceId": "i-stopped",
                "State": {"Code": 80, "Name": "stopped"},
            },
        ],
    }
]


def _stub_region(client: Any) -> None:
    if client.meta.service_model.service_name != "ec2":
        return
    stubber = Stubber(client)
    for operation, response in (
        ("describe_security_group_rules", {"SecurityGroupRules": RULES}),
        ("describe_vpcs", {"Vpcs": [SHARED_VPC]}),
        ("describe_subnets", {"Subnets": [SHARED_SUBNET, IPV6_ONLY_SUBNET]}),
        ("describe_security_groups", {"SecurityGroups": [GROUP]}),
        (
            "describe_network_interfaces",
            {"NetworkInterfaces": [IPV6_ONLY_ENI, PREFIX_EIP_ENI, ENDPOINT_ENI]},
        ),
        ("describe_instances", {"Reservations": RESERVATIONS}),
    ):
        stubber.add_response(operation, response, {"MaxResults": 1000})
    stubber.activate()


@pytest.fixture(scope="module")
def snapshot(moto: None) -> RegionSnapshot:
    aws = AwsAccess(client_hook=_stub_region)
    session = aws.open_account(poll_for(PARTICIPANT, ["us-east-1"]))
    found, _ = aws.discover_region(
        session, "us-east-1", calls_per_second=100, cancelled=threading.Event()
    )
    return found


def test_eni_is_kept_when_it_has_no_ipv4_address_at_all(
    snapshot: RegionSnapshot,
) -> None:
    eni = next(e for e in snapshot.enis if e.eni_id == "eni-v6only")

    assert eni.private_addresses == []
    assert eni.ipv6_addresses == [IPv6Address("2600:1f18:aaaa:1::10")]
    assert eni.ipv6_prefixes == [IPv6Network("2600:1f18:aaaa:1:8::/80")]
    assert eni.group_ids == ["sg-app"]


def test_rules_keep_what_they_reference_when_a_peer_group_prefix_list_or_v6(
    snapshot: RegionSnapshot,
) -> None:
    [group] = snapshot.security_groups
    rules = {rule.rule_id: rule for rule in group.rules}

    assert rules["sgr-peer"].referenced_group_id == "sg-in-peer"
    assert rules["sgr-peer"].referenced_group_owner_id == PEER
    assert rules["sgr-peer"].referenced_vpc_id == "vpc-peer"
    assert rules["sgr-peer"].referenced_vpc_peering_connection_id == "pcx-1"
    assert rules["sgr-peer"].cidr_ipv4 is None
    assert (rules["sgr-pl"].prefix_list_id, rules["sgr-pl"].is_egress) == (
        "pl-63a5400a",
        True,
    )
    assert rules["sgr-v6"].cidr_ipv6 == IPv6Network("::/0")
    assert rules["sgr-v6"].tags == {"why": "bastion"}
    assert {rule.group_owner_id for rule in group.rules} == {PARTICIPANT}


def test_eni_keeps_its_prefix_and_elastic_ip_when_both_are_delegated(
    snapshot: RegionSnapshot,
) -> None:
    eni = next(e for e in snapshot.enis if e.eni_id == "eni-prefix")
    primary, secondary = eni.private_addresses

    assert eni.ipv4_prefixes == [IPv4Network("10.0.1.16/28")]
    assert (primary.address, primary.is_primary) == (IPv4Address("10.0.1.10"), True)
    assert primary.public_ip == IPv4Address("198.51.100.7")
    assert (primary.allocation_id, primary.association_id) == (
        "eipalloc-1",
        "eipassoc-1",
    )
    assert primary.public_ip_owner_id == PARTICIPANT
    assert (secondary.address, secondary.public_ip) == (IPv4Address("10.0.1.11"), None)
    assert eni.attachment is not None and eni.attachment.instance_id == "i-app"
    assert eni.tags == {"team": "payments"}


def test_shared_subnet_keeps_its_owner_when_seen_from_a_participant(
    snapshot: RegionSnapshot,
) -> None:
    subnets = {subnet.subnet_id: subnet for subnet in snapshot.subnets}
    [vpc] = snapshot.vpcs

    assert subnets["subnet-shared"].owner_id == VPC_OWNER
    assert subnets["subnet-v6"].cidr_block is None
    assert subnets["subnet-v6"].ipv6_cidr_blocks == [
        IPv6Network("2600:1f18:aaaa:1::/64")
    ]
    assert vpc.owner_id == VPC_OWNER
    assert vpc.cidr_blocks == [IPv4Network("10.0.0.0/16")]
    assert {eni.owner_id for eni in snapshot.enis} == {PARTICIPANT}


def test_requester_managed_eni_keeps_its_type_and_requester(
    snapshot: RegionSnapshot,
) -> None:
    eni = next(e for e in snapshot.enis if e.eni_id == "eni-endpoint")

    assert (eni.interface_type, eni.requester_managed, eni.requester_id) == (
        "vpc_endpoint",
        True,
        "727180483921",
    )


def test_instances_keep_every_state_but_terminated_and_enis_in_device_order(
    snapshot: RegionSnapshot,
) -> None:
    instances = {i.instance_id: i for i in snapshot.instances}

    assert set(instances) == {"i-app", "i-stopped"}
    assert instances["i-app"].eni_ids == ["eni-prefix", "eni-v6only"]
    assert instances["i-app"].owner_id == PARTICIPANT
    assert instances["i-stopped"].state == "stopped"
    assert instances["i-app"].iam_instance_profile_arn.endswith("instance-profile/app")
