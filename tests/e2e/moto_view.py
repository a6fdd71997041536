"""What moto holds and what the API answers, reduced to comparable records.

Both sides become `{kind: {aws_id: record}}` where a record keeps the fields
an operator relies on (owner, place, addresses, groups, rules, tags), with
addresses and networks normalised so that text forms do not matter.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from deploy.estate import ACCOUNTS, ec2_client

Inventory = dict[str, dict[str, dict[str, Any]]]
KINDS = ("vpcs", "subnets", "security-groups", "enis", "instances")


def ip(value: str | None) -> str | None:
    return None if value is None else str(ipaddress.ip_address(value))


def net(value: str | None) -> str | None:
    return None if value is None else str(ipaddress.ip_network(value, strict=False))


def tag_map(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


def live_blocks(associations: list[dict[str, Any]], key: str) -> list[str | None]:
    """The CIDRs whose association AWS calls `associated` (or `associating`).

    moto answers describe_subnets with a state of "{'State': 'associated'}" (its
    own serialisation slip), which is none of AWS's states: such a block counts
    as not associated here, as it does for any reader that follows the API.
    """
    live = {"associated", "associating"}
    return sorted(
        net(block[key])
        for block in associations
        if block.get(f"{key}State", {}).get("State", "associated") in live
    )


def pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    paginator = client.get_paginator(operation)
    return [item for page in paginator.paginate(**kwargs) for item in page[key]]


# --- moto ----------------------------------------------------------------------


def moto_vpc(vpc: dict[str, Any], region: str) -> dict[str, Any]:
    return {
        "owner": vpc["OwnerId"],
        "region": region,
        "cidr_block": net(vpc["CidrBlock"]),
        "ipv6": live_blocks(
            vpc.get("Ipv6CidrBlockAssociationSet", []), "Ipv6CidrBlock"
        ),
        "is_default": vpc.get("IsDefault", False),
        "tags": tag_map(vpc.get("Tags")),
    }


def moto_subnet(subnet: dict[str, Any], region: str) -> dict[str, Any]:
    return {
        "owner": subnet["OwnerId"],
        "region": region,
        "vpc_id": subnet["VpcId"],
        "cidr_block": net(subnet["CidrBlock"]),
        "zone": subnet["AvailabilityZone"],
        "ipv6": live_blocks(
            subnet.get("Ipv6CidrBlockAssociationSet", []), "Ipv6CidrBlock"
        ),
        "tags": tag_map(subnet.get("Tags")),
    }


def moto_rule(rule: dict[str, Any]) -> tuple[Any, ...]:
    referenced = rule.get("ReferencedGroupInfo", {})
    return (
        rule["SecurityGroupRuleId"],
        rule["IsEgress"],
        rule["IpProtocol"],
        rule.get("FromPort"),
        rule.get("ToPort"),
        net(rule.get("CidrIpv4")),
        net(rule.get("CidrIpv6")),
        rule.get("PrefixListId"),
        referenced.get("GroupId"),
    )


def moto_group(
    group: dict[str, Any], rules: list[dict[str, Any]], region: str
) -> dict[str, Any]:
    return {
        "owner": group["OwnerId"],
        "region": region,
        "vpc_id": group.get("VpcId"),
        "name": group["GroupName"],
        "rules": sorted(moto_rule(rule) for rule in rules),
        "tags": tag_map(group.get("Tags")),
    }


def moto_eni(eni: dict[str, Any], region: str) -> dict[str, Any]:
    addresses = {
        ("private_ipv4", ip(a["PrivateIpAddress"])) for a in eni["PrivateIpAddresses"]
    }
    for private in eni["PrivateIpAddresses"]:
        if public := private.get("Association", {}).get("PublicIp"):
            addresses.add(("public_ipv4", ip(public)))
    if public := eni.get("Association", {}).get("PublicIp"):
        addresses.add(("public_ipv4", ip(public)))
    addresses |= {("ipv6", ip(a["Ipv6Address"])) for a in eni.get("Ipv6Addresses", [])}
    return {
        "owner": eni["OwnerId"],
        "region": region,
        "vpc_id": eni["VpcId"],
        "subnet_id": eni["SubnetId"],
        "type": eni.get("InterfaceType"),
        "status": eni["Status"],
        "mac": eni.get("MacAddress"),
        "addresses": sorted(addresses),
        "groups": sorted(group["GroupId"] for group in eni["Groups"]),
        "instance_id": eni.get("Attachment", {}).get("InstanceId"),
        "tags": tag_map(eni.get("TagSet")),
    }


def moto_instance(instance: dict[str, Any], owner: str, region: str) -> dict[str, Any]:
    return {
        "owner": owner,
        "region": region,
        "state": instance["State"]["Name"],
        "vpc_id": instance.get("VpcId"),
        "subnet_id": instance.get("SubnetId"),
        "private_ip": ip(instance.get("PrivateIpAddress")),
        "public_ip": ip(instance.get("PublicIpAddress")),
        "type": instance["InstanceType"],
        "enis": sorted(
            eni["NetworkInterfaceId"] for eni in instance["NetworkInterfaces"]
        ),
        "tags": tag_map(instance.get("Tags")),
    }


def moto_inventory(endpoint_url: str) -> Inventory:
    """Everything the sample accounts hold in their registered regions."""
    found: Inventory = {kind: {} for kind in KINDS}
    for account in ACCOUNTS:
        for region in account.regions:
            ec2 = ec2_client(endpoint_url, account.account_id, region)
            for vpc in pages(ec2, "describe_vpcs", "Vpcs"):
                found["vpcs"][vpc["VpcId"]] = moto_vpc(vpc, region)
            for subnet in pages(ec2, "describe_subnets", "Subnets"):
                found["subnets"][subnet["SubnetId"]] = moto_subnet(subnet, region)
            rules = ec2.describe_security_group_rules()["SecurityGroupRules"]
            for group in pages(ec2, "describe_security_groups", "SecurityGroups"):
                own = [rule for rule in rules if rule["GroupId"] == group["GroupId"]]
                found["security-groups"][group["GroupId"]] = moto_group(
                    group, own, region
                )
            for eni in pages(ec2, "describe_network_interfaces", "NetworkInterfaces"):
                found["enis"][eni["NetworkInterfaceId"]] = moto_eni(eni, region)
            for reservation in pages(ec2, "describe_instances", "Reservations"):
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] == "terminated":
                        continue
                    found["instances"][instance["InstanceId"]] = moto_instance(
                        instance, reservation["OwnerId"], region
                    )
    return found


# --- the API ---------------------------------------------------------------------


def api_vpc(vpc: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": vpc["owner_account_id"],
        "region": vpc["region"],
        "cidr_block": net(vpc["cidr_block"]),
        "ipv6": sorted(net(block) for block in vpc["ipv6_cidr_blocks"]),
        "is_default": vpc["is_default"],
        "tags": vpc["tags"],
    }


def api_subnet(subnet: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": subnet["owner_account_id"],
        "region": subnet["region"],
        "vpc_id": subnet["vpc_id"],
        "cidr_block": net(subnet["cidr_block"]),
        "zone": subnet["availability_zone"],
        "ipv6": sorted(net(block) for block in subnet["ipv6_cidr_blocks"]),
        "tags": subnet["tags"],
    }


def api_rule(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rule["rule_id"],
        rule["is_egress"],
        rule["ip_protocol"],
        rule["from_port"],
        rule["to_port"],
        net(rule["cidr_ipv4"]),
        net(rule["cidr_ipv6"]),
        rule["prefix_list_id"],
        rule["referenced_group_id"],
    )


def api_group(group: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": group["owner_account_id"],
        "region": group["region"],
        "vpc_id": group["vpc_id"],
        "name": group["group_name"],
        "rules": sorted(api_rule(rule) for rule in group["rules"]),
        "tags": group["tags"],
    }


def api_eni(eni: dict[str, Any]) -> dict[str, Any]:
    attachment = eni["attachment"] or {}
    return {
        "owner": eni["owner_account_id"],
        "region": eni["region"],
        "vpc_id": eni["vpc_id"],
        "subnet_id": eni["subnet_id"],
        "type": eni["interface_type"],
        "status": eni["status"],
        "mac": eni["mac_address"],
        "addresses": sorted((a["kind"], ip(a["address"])) for a in eni["addresses"]),
        "groups": sorted(group["group_id"] for group in eni["security_groups"]),
        "instance_id": attachment.get("instance_id"),
        "tags": eni["tags"],
    }


def api_instance(instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": instance["owner_account_id"],
        "region": instance["region"],
        "state": instance["state"],
        "vpc_id": instance["vpc_id"],
        "subnet_id": instance["subnet_id"],
        "private_ip": ip(instance["private_ip"]),
        "public_ip": ip(instance["public_ip"]),
        "type": instance["instance_type"],
        "enis": sorted(instance["eni_ids"]),
        "tags": instance["tags"],
    }


API_ID = {
    "vpcs": ("vpc_id", api_vpc),
    "subnets": ("subnet_id", api_subnet),
    "security-groups": ("group_id", api_group),
    "enis": ("eni_id", api_eni),
    "instances": ("instance_id", api_instance),
}


def api_inventory(items: dict[str, list[dict[str, Any]]]) -> Inventory:
    """The API's list items, by kind, as comparable records."""
    return {
        kind: {item[API_ID[kind][0]]: API_ID[kind][1](item) for item in items[kind]}
        for kind in KINDS
    }


def differences(expected: Inventory, actual: Inventory) -> list[str]:
    """Human-readable differences, empty when both hold the same."""
    found = []
    for kind in KINDS:
        missing = sorted(set(expected[kind]) - set(actual[kind]))
        ghosts = sorted(set(actual[kind]) - set(expected[kind]))
        found += [f"{kind}: {aws_id} missing from the API" for aws_id in missing]
        found += [f"{kind}: {aws_id} in the API, not in AWS" for aws_id in ghosts]
        for aws_id in sorted(set(expected[kind]) & set(actual[kind])):
            want, got = expected[kind][aws_id], actual[kind][aws_id]
            for field in want:
                if want[field] != got[field]:
                    found.append(
                        f"{kind}: {aws_id} {field}: AWS {want[field]!r}, "
                        f"API {got[field]!r}"
                    )
    return found
