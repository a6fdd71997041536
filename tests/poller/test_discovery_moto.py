"""Discovery against moto: several accounts and regions, the snapshot equals moto."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.ec2.models import ec2_backends

from services.poller.aws import AwsAccess, RegionStats, role_arn
from shared.events import RegionSnapshot
from tests.poller.fakes import Faults, account_session, poll_for

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
MANY_ENIS = 1_100


@dataclass
class World:
    vpc_id: str
    eni_with_secondaries: str
    public_ip: str
    instance_with_two_enis: str
    terminated_instance: str


def _build_region(
    session: boto3.Session, region: str, enis: int, *, extras: bool
) -> World | None:
    ec2 = session.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "main"}])
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]
    other_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.16.0/24")["Subnet"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)
    db = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)
    ec2.authorize_security_group_ingress(
        GroupId=web["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=db["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web["GroupId"]}],
            }
        ],
    )
    account = session.client("sts").get_caller_identity()["Account"]
    backend = ec2_backends[account][region]
    for _ in range(enis):  # straight into moto: the API takes ~10 ms an ENI
        backend.create_network_interface(
            subnet["SubnetId"], None, group_ids=[web["GroupId"]]
        )
    if not extras:
        return None

    secondaries = ec2.create_network_interface(
        SubnetId=other_subnet["SubnetId"],
        Groups=[web["GroupId"], db["GroupId"]],
        SecondaryPrivateIpAddressCount=2,
    )["NetworkInterface"]["NetworkInterfaceId"]
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(
        AllocationId=address["AllocationId"], NetworkInterfaceId=secondaries
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=other_subnet["SubnetId"],
    )["Instances"][0]["InstanceId"]
    second = ec2.create_network_interface(SubnetId=other_subnet["SubnetId"])
    ec2.attach_network_interface(
        NetworkInterfaceId=second["NetworkInterface"]["NetworkInterfaceId"],
        InstanceId=instance,
        DeviceIndex=1,
    )
    gone = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
    return World(vpc, secondaries, address["PublicIp"], instance, gone["InstanceId"])


def _moto_enis(account: str, region: str) -> dict[str, Any]:
    backend = ec2_backends[account][region]
    return {
        eni.id: (
            eni.owner_id,
            eni.subnet.id,
            sorted(group.id for group in eni.group_set),
            sorted(
                (item["PrivateIpAddress"], bool(item.get("Primary")))
                for item in eni.private_ip_addresses
            ),
            eni.public_ip,
        )
        for eni in backend.enis.values()
    }


def _snapshot_enis(snapshot: RegionSnapshot) -> dict[str, Any]:
    return {
        eni.eni_id: (
            eni.owner_id,
            eni.subnet_id,
            sorted(eni.group_ids),
            sorted((str(a.address), a.is_primary) for a in eni.private_addresses),
            next(
                (str(a.public_ip) for a in eni.private_addresses if a.public_ip),
                None,
            ),
        )
        for eni in snapshot.enis
    }


def _moto_instances(account: str, region: str) -> dict[str, list[str]]:
    backend = ec2_backends[account][region]
    return {
        instance.id: [instance.nics[index].id for index in sorted(instance.nics)]
        for reservation in backend.reservations.values()
        for instance in reservation.instances
        if instance.state != "terminated"
    }


def _api_ids(session: boto3.Session, region: str) -> dict[str, set[str]]:
    ec2 = session.client("ec2", region_name=region)
    return {
        "vpcs": {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]},
        "subnets": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "groups": {
            g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
        },
        "rules": {
            r["SecurityGroupRuleId"]
            for r in ec2.describe_security_group_rules()["SecurityGroupRules"]
        },
    }


def _ids(snapshot: RegionSnapshot) -> dict[str, set[str]]:
    return {
        "vpcs": {v.vpc_id for v in snapshot.vpcs},
        "subnets": {s.subnet_id for s in snapshot.subnets},
        "groups": {g.group_id for g in snapshot.security_groups},
        "rules": {r.rule_id for g in snapshot.security_groups for r in g.rules},
    }


@pytest.fixture(scope="module")
def world(moto: None) -> World:
    a = account_session(ACCOUNT_A)
    b = account_session(ACCOUNT_B)
    built = _build_region(a, "us-east-1", MANY_ENIS, extras=True)
    _build_region(a, "eu-west-1", 3, extras=False)
    _build_region(b, "us-east-1", 2, extras=False)
    assert built is not None
    return built


@dataclass
class Discovery:
    snapshots: dict[str, RegionSnapshot]
    stats: dict[str, RegionStats]
    faults: Faults


def _discover(account: str, regions: list[str]) -> Discovery:
    faults = Faults()
    aws = AwsAccess(client_hook=faults.register)
    session = aws.open_account(poll_for(account, regions))
    found = {
        region: aws.discover_region(
            session, region, calls_per_second=100, cancelled=threading.Event()
        )
        for region in regions
    }
    return Discovery(
        {region: snapshot for region, (snapshot, _) in found.items()},
        {region: stats for region, (_, stats) in found.items()},
        faults,
    )


@pytest.fixture(scope="module")
def found_a(world: World) -> Discovery:
    return _discover(ACCOUNT_A, ["us-east-1", "eu-west-1"])


@pytest.fixture(scope="module")
def found_b(world: World) -> Discovery:
    return _discover(ACCOUNT_B, ["us-east-1"])


def test_snapshot_equals_what_moto_holds_when_polling_several_accounts_and_regions(
    found_a: Discovery, found_b: Discovery
) -> None:
    a = account_session(ACCOUNT_A)
    b = account_session(ACCOUNT_B)
    in_b = found_b.snapshots["us-east-1"]

    for region, snapshot in found_a.snapshots.items():
        assert _snapshot_enis(snapshot) == _moto_enis(ACCOUNT_A, region)
        assert {i.instance_id: i.eni_ids for i in snapshot.instances} == (
            _moto_instances(ACCOUNT_A, region)
        )
        assert _ids(snapshot) == _api_ids(a, region)
    assert _snapshot_enis(in_b) == _moto_enis(ACCOUNT_B, "us-east-1")
    assert _ids(in_b) == _api_ids(b, "us-east-1")
    assert len(found_a.snapshots["us-east-1"].enis) > MANY_ENIS
    assert not set(_snapshot_enis(found_a.snapshots["us-east-1"])) & set(
        _snapshot_enis(in_b)
    )


def test_addresses_and_instances_are_kept_when_enis_have_secondaries_and_eips(
    world: World, found_a: Discovery
) -> None:
    snapshot = found_a.snapshots["us-east-1"]

    enis = {eni.eni_id: eni for eni in snapshot.enis}
    addresses = enis[world.eni_with_secondaries].private_addresses
    instances = {i.instance_id: i for i in snapshot.instances}
    assert len(addresses) == 3
    assert sum(a.is_primary for a in addresses) == 1
    assert [str(a.public_ip) for a in addresses if a.public_ip] == [world.public_ip]
    assert len(instances[world.instance_with_two_enis].eni_ids) == 2
    assert world.terminated_instance not in instances
    assert all(eni.owner_id == ACCOUNT_A for eni in snapshot.enis)
    attached = [
        eni
        for eni in snapshot.enis
        if eni.attachment and eni.attachment.instance_id == world.instance_with_two_enis
    ]
    assert sorted(e.attachment.device_index for e in attached if e.attachment) == [0, 1]
    db = next(g for g in snapshot.security_groups if g.group_name == "db")
    web = next(g for g in snapshot.security_groups if g.group_name == "web")
    assert [r.referenced_group_id for r in db.rules if not r.is_egress] == [
        web.group_id
    ]
    assert all(
        str(a.address).startswith("10.0.")
        for e in snapshot.enis
        for a in e.private_addresses
        if e.vpc_id == world.vpc_id
    )


def test_enis_are_read_in_pages_of_1000_when_a_region_holds_more(
    found_a: Discovery,
) -> None:
    requests = found_a.faults.calls("DescribeNetworkInterfaces", "us-east-1")
    stats = found_a.stats["us-east-1"]
    snapshot = found_a.snapshots["us-east-1"]

    expected_pages = -(-len(ec2_backends[ACCOUNT_A]["us-east-1"].enis) // 1000)
    assert expected_pages >= 2
    assert len(requests) == expected_pages == stats.pages["describe_network_interfaces"]
    assert all(params["MaxResults"] == 1000 for params in requests)
    assert all(
        params.get("MaxResults") == 1000
        for operation in (
            "DescribeVpcs",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeSecurityGroupRules",
            "DescribeInstances",
        )
        for params in found_a.faults.calls(operation)
    )
    assert len({eni.eni_id for eni in snapshot.enis}) == len(snapshot.enis)


def test_role_arn_names_the_partition_when_only_a_role_name_is_given() -> None:
    arns = [
        role_arn(poll_for(ACCOUNT_A, [region]))
        for region in ("eu-west-1", "cn-north-1", "us-gov-west-1")
    ]

    assert arns == [
        f"arn:aws:iam::{ACCOUNT_A}:role/PaloInventoryInspectionRole",
        f"arn:aws-cn:iam::{ACCOUNT_A}:role/PaloInventoryInspectionRole",
        f"arn:aws-us-gov:iam::{ACCOUNT_A}:role/PaloInventoryInspectionRole",
    ]


def test_assume_role_carries_external_id_and_task_session_name_when_set(
    moto: None,
) -> None:
    faults = Faults()
    aws = AwsAccess(client_hook=faults.register)
    poll = poll_for(ACCOUNT_A, ["us-east-1"], external_id="ext-42")

    aws.open_account(poll)

    [request] = faults.calls("AssumeRole")
    assert request["ExternalId"] == "ext-42"
    assert str(poll.task_id) in request["RoleSessionName"]
    assert request["RoleArn"] == role_arn(poll)
