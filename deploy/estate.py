"""A sample AWS estate, built in moto's server, that looks like a real one.

Three accounts in two regions; a VPC of the network account shared with the
payments account; ENIs with secondary private, public (Elastic IP) and IPv6
addresses; instances with several ENIs; an empty VPC; security groups whose
rules use CIDRs, IPv6 CIDRs and other groups.

moto keeps one backend per account and region and reaches it through the
credentials of a role assumed in that account, which is how the poller reaches
it too. moto has no VPC sharing (RAM only records the share), so
`share_vpc` puts the owner's VPC and subnets into the participant's backend:
the participant then describes them with the owner's `OwnerId`, as AWS shows a
shared VPC, and creates its ENIs and instances in them. That needs moto running
in this process (`deploy.standin`).
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field
from typing import Any

import boto3

ROLE_NAME = "PaloInventoryInspectionRole"
NETWORK = "111111111111"
PAYMENTS = "222222222222"
ANALYTICS = "333333333333"
US = "us-east-1"
EU = "eu-west-1"
IMAGE_ID = "ami-12c6146b"


@dataclass(frozen=True)
class SampleAccount:
    account_id: str
    account_name: str
    regions: tuple[str, ...]


ACCOUNTS = (
    SampleAccount(NETWORK, "network-hub", (US, EU)),
    SampleAccount(PAYMENTS, "payments", (US, EU)),
    SampleAccount(ANALYTICS, "analytics", (EU,)),
)


@dataclass
class Estate:
    """The ids of what was made, by the names the seeding gave them."""

    endpoint_url: str
    vpcs: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    enis: dict[str, str] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)
    public_ips: dict[str, str] = field(default_factory=dict)
    shared_vpc_participants: dict[str, list[str]] = field(default_factory=dict)


def role_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{ROLE_NAME}"


def ec2_client(endpoint_url: str, account_id: str, region: str) -> Any:
    """An EC2 client of `account_id`, through the role the poller assumes too."""
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    credentials = sts.assume_role(
        RoleArn=role_arn(account_id), RoleSessionName="sample-estate"
    )["Credentials"]
    return boto3.client(
        "ec2",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def share_vpc(owner: str, participant: str, region: str, vpc_id: str) -> None:
    """Show the owner's VPC and its subnets to the participant (moto in-process)."""
    from moto.ec2.models import ec2_backends

    owner_backend = ec2_backends[owner][region]
    participant_backend = ec2_backends[participant][region]
    participant_backend.vpcs[vpc_id] = owner_backend.vpcs[vpc_id]
    for zone, subnets in owner_backend.subnets.items():
        for subnet_id, subnet in subnets.items():
            if subnet.vpc_id == vpc_id:
                participant_backend.subnets[zone][subnet_id] = subnet


def tags(name: str, **extra: str) -> list[dict[str, Any]]:
    pairs = {"Name": name, "environment": "demo", **extra}
    return [{"Key": key, "Value": value} for key, value in pairs.items()]


def tag_spec(kind: str, name: str, **extra: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tags(name, **extra)}]


class Builder:
    """Makes named resources in one account and region and records their ids."""

    def __init__(self, estate: Estate, account_id: str, region: str) -> None:
        self.estate = estate
        self.ec2 = ec2_client(estate.endpoint_url, account_id, region)

    def vpc(self, name: str, cidr: str, *, ipv6: bool = False) -> str:
        vpc = self.ec2.create_vpc(
            CidrBlock=cidr,
            AmazonProvidedIpv6CidrBlock=ipv6,
            TagSpecifications=tag_spec("vpc", name),
        )["Vpc"]
        self.estate.vpcs[name] = vpc["VpcId"]
        return str(vpc["VpcId"])

    def subnet(
        self, name: str, vpc: str, cidr: str, zone: str, *, ipv6_index: int = -1
    ) -> str:
        options: dict[str, Any] = {}
        if ipv6_index >= 0:
            options["Ipv6CidrBlock"] = self.ipv6_subnet(vpc, ipv6_index)
        subnet = self.ec2.create_subnet(
            VpcId=self.estate.vpcs[vpc],
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=tag_spec("subnet", name),
            **options,
        )["Subnet"]
        self.estate.subnets[name] = subnet["SubnetId"]
        return str(subnet["SubnetId"])

    def ipv6_subnet(self, vpc: str, index: int) -> str:
        """The `index`-th /64 of the VPC's Amazon-provided IPv6 block."""
        described = self.ec2.describe_vpcs(VpcIds=[self.estate.vpcs[vpc]])["Vpcs"][0]
        block = described["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
        network = ipaddress.IPv6Network(block)
        subnets = network.subnets(new_prefix=64)
        return str(next(itertools.islice(subnets, index, None)))

    def group(self, name: str, vpc: str, ingress: list[dict[str, Any]]) -> str:
        group_id = self.ec2.create_security_group(
            GroupName=name,
            Description=f"{name} servers",
            VpcId=self.estate.vpcs[vpc],
            TagSpecifications=tag_spec("security-group", name),
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=ingress
        )
        self.estate.groups[name] = group_id
        return str(group_id)

    def eni(
        self,
        name: str,
        subnet: str,
        groups: list[str],
        *,
        secondary: int = 0,
        ipv6: int = 0,
    ) -> str:
        options: dict[str, Any] = {}
        if secondary:
            options["SecondaryPrivateIpAddressCount"] = secondary
        if ipv6:
            options["Ipv6AddressCount"] = ipv6
        eni = self.ec2.create_network_interface(
            SubnetId=self.estate.subnets[subnet],
            Groups=[self.estate.groups[group] for group in groups],
            Description=f"{name} interface",
            TagSpecifications=tag_spec("network-interface", name),
            **options,
        )["NetworkInterface"]
        self.estate.enis[name] = eni["NetworkInterfaceId"]
        return str(eni["NetworkInterfaceId"])

    def elastic_ip(self, name: str, eni: str) -> str:
        """Allocate an Elastic IP and associate it with the ENI's primary address."""
        address = self.ec2.allocate_address(
            Domain="vpc", TagSpecifications=tag_spec("elastic-ip", name)
        )
        self.ec2.associate_address(
            AllocationId=address["AllocationId"],
            NetworkInterfaceId=self.estate.enis[eni],
        )
        self.estate.public_ips[name] = address["PublicIp"]
        return str(address["PublicIp"])

    def instance(
        self, name: str, subnet: str, groups: list[str], extra_enis: list[str]
    ) -> str:
        """An instance with its own primary ENI plus `extra_enis` attached."""
        reservation = self.ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            NetworkInterfaces=[
                {
                    "DeviceIndex": 0,
                    "SubnetId": self.estate.subnets[subnet],
                    "Groups": [self.estate.groups[group] for group in groups],
                }
            ],
            TagSpecifications=tag_spec("instance", name),
        )
        instance = reservation["Instances"][0]
        instance_id = instance["InstanceId"]
        self.estate.enis[f"{name}-eth0"] = instance["NetworkInterfaces"][0][
            "NetworkInterfaceId"
        ]
        for index, eni in enumerate(extra_enis, start=1):
            self.ec2.attach_network_interface(
                NetworkInterfaceId=self.estate.enis[eni],
                InstanceId=instance_id,
                DeviceIndex=index,
            )
        self.estate.instances[name] = instance_id
        return str(instance_id)


def cidr_rule(port: int, cidr: str, description: str) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": cidr, "Description": description}],
    }


def ipv6_rule(port: int, cidr: str) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "IPv6 clients"}],
    }


def group_rule(port: int, group_id: str, owner: str) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "UserIdGroupPairs": [{"GroupId": group_id, "UserId": owner}],
    }


def build_network_account(estate: Estate) -> None:
    """The network account: a shared VPC in us-east-1, a small VPC in eu-west-1."""
    us = Builder(estate, NETWORK, US)
    us.vpc("shared-services", "10.10.0.0/16", ipv6=True)
    us.subnet(
        "shared-app-a", "shared-services", "10.10.1.0/24", "us-east-1a", ipv6_index=0
    )
    us.subnet("shared-app-b", "shared-services", "10.10.2.0/24", "us-east-1b")
    us.subnet("shared-edge", "shared-services", "10.10.9.0/24", "us-east-1a")
    us.group("hub-edge", "shared-services", [cidr_rule(443, "0.0.0.0/0", "HTTPS")])
    us.group(
        "hub-bastion",
        "shared-services",
        [
            cidr_rule(22, "203.0.113.0/24", "office"),
            ipv6_rule(22, "2001:db8::/32"),
            group_rule(22, estate.groups["hub-edge"], NETWORK),
        ],
    )
    us.eni("bastion-mgmt", "shared-edge", ["hub-bastion"], secondary=1)
    us.instance("bastion", "shared-edge", ["hub-bastion"], ["bastion-mgmt"])
    us.eni("edge-proxy", "shared-edge", ["hub-edge"], secondary=2)
    us.elastic_ip("edge-proxy-eip", "edge-proxy")
    us.vpc("retired", "10.99.0.0/16")

    eu = Builder(estate, NETWORK, EU)
    eu.vpc("hub-eu", "10.20.0.0/16")
    eu.subnet("hub-eu-a", "hub-eu", "10.20.1.0/24", "eu-west-1a")
    eu.group("hub-eu-dns", "hub-eu", [cidr_rule(53, "10.0.0.0/8", "resolvers")])
    eu.eni("resolver", "hub-eu-a", ["hub-eu-dns"], secondary=1)
    eu.elastic_ip("resolver-eip", "resolver")


def build_payments_account(estate: Estate) -> None:
    """Payments: workloads in the network account's shared VPC, its own VPC in EU."""
    share_vpc(NETWORK, PAYMENTS, US, estate.vpcs["shared-services"])
    estate.shared_vpc_participants[estate.vpcs["shared-services"]] = [PAYMENTS]

    us = Builder(estate, PAYMENTS, US)
    us.group("payments-lb", "shared-services", [cidr_rule(443, "0.0.0.0/0", "web")])
    us.group(
        "payments-api",
        "shared-services",
        [
            cidr_rule(8443, "10.10.0.0/16", "inside the shared VPC"),
            group_rule(8443, estate.groups["payments-lb"], PAYMENTS),
        ],
    )
    us.eni("payments-data", "shared-app-a", ["payments-api"], secondary=2, ipv6=1)
    us.eni("payments-admin", "shared-app-b", ["payments-api"])
    us.instance(
        "payments-api-1",
        "shared-app-a",
        ["payments-api"],
        ["payments-data", "payments-admin"],
    )
    us.eni("payments-ingress", "shared-app-a", ["payments-api"], secondary=3)
    us.elastic_ip("payments-ingress-eip", "payments-ingress")
    us.eni("payments-spare", "shared-app-b", ["payments-api"])

    eu = Builder(estate, PAYMENTS, EU)
    eu.vpc("payments-eu", "10.40.0.0/16")
    eu.subnet("payments-eu-a", "payments-eu", "10.40.1.0/24", "eu-west-1a")
    eu.group("payments-eu-api", "payments-eu", [cidr_rule(443, "10.0.0.0/8", "api")])
    eu.instance("payments-eu-1", "payments-eu-a", ["payments-eu-api"], [])


def build_analytics_account(estate: Estate) -> None:
    """Analytics: one VPC in eu-west-1 with IPv6, a three-ENI instance."""
    eu = Builder(estate, ANALYTICS, EU)
    eu.vpc("analytics", "10.50.0.0/16", ipv6=True)
    eu.subnet("analytics-a", "analytics", "10.50.1.0/24", "eu-west-1a", ipv6_index=1)
    eu.subnet("analytics-b", "analytics", "10.50.2.0/24", "eu-west-1b")
    eu.group(
        "analytics-workers",
        "analytics",
        [cidr_rule(7077, "10.50.0.0/16", "spark"), ipv6_rule(443, "::/0")],
    )
    eu.eni("worker-data", "analytics-a", ["analytics-workers"], secondary=2, ipv6=2)
    eu.eni("worker-backup", "analytics-b", ["analytics-workers"], secondary=1)
    eu.instance(
        "analytics-worker-1",
        "analytics-a",
        ["analytics-workers"],
        ["worker-data", "worker-backup"],
    )
    eu.eni("analytics-notebook", "analytics-b", ["analytics-workers"])
    eu.elastic_ip("analytics-notebook-eip", "analytics-notebook")


def seed_estate(endpoint_url: str) -> Estate:
    """Build the sample estate in the moto server at `endpoint_url` (in-process)."""
    estate = Estate(endpoint_url=endpoint_url)
    build_network_account(estate)
    build_payments_account(estate)
    build_analytics_account(estate)
    return estate
