from __future__ import annotations

import httpx
import pytest

from tests.api import seed
from tests.api.conftest import READER


@pytest.fixture(scope="module")
def client(seeded_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return seeded_client


async def get(client: httpx.AsyncClient, path: str, **params: object) -> httpx.Response:
    return await client.get(f"/api/v1{path}", params=params, headers=READER)


def ids(response: httpx.Response, key: str) -> list[str]:
    return [item[key] for item in response.json()["items"]]


async def test_vpcs_list_every_owner_when_unfiltered(client: httpx.AsyncClient) -> None:
    response = await get(client, "/vpcs")

    assert response.status_code == 200
    assert ids(response, "vpc_id") == [seed.VPC, seed.OTHER_VPC]
    assert response.json()["next_cursor"] is None


async def test_last_seen_is_the_latest_poll_of_any_witness_when_several_see_it(
    client: httpx.AsyncClient,
) -> None:
    shared = (await get(client, f"/vpcs/{seed.VPC}")).json()
    only_a = (await get(client, f"/subnets/{seed.SUBNET_2}")).json()

    assert shared["seen_by"] == [seed.A, seed.B]
    assert shared["last_seen_at"].startswith("2026-01-05T10:09")
    assert only_a["last_seen_at"].startswith("2026-01-05T10:05")
    assert shared["cidr_block"] == "10.1.0.0/16"
    assert shared["tags"] == {"Name": "shared"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"owner_account_id": seed.A}, [seed.ENI_1, seed.ENI_3]),
        ({"owner_account_id": seed.B}, [seed.ENI_2]),
        ({"vpc_id": seed.VPC}, [seed.ENI_1, seed.ENI_2, seed.ENI_3]),
        ({"subnet_id": seed.SUBNET_2}, [seed.ENI_3]),
        ({"status": "available"}, [seed.ENI_3]),
        ({"interface_type": "nat_gateway"}, [seed.ENI_3]),
        ({"has_public_ip": "true"}, [seed.ENI_1]),
        ({"has_public_ip": "false"}, [seed.ENI_2, seed.ENI_3, seed.ENI_C]),
        ({"tag": "Name=web-1"}, [seed.ENI_1]),
        ({"tag": "Name"}, [seed.ENI_1, seed.ENI_2]),
        ({"tag": ["Name", "Name=web-1"]}, [seed.ENI_1]),
        ({"instance_id": seed.INSTANCE}, [seed.ENI_1]),
        ({"group_id": seed.GROUP}, [seed.ENI_1, seed.ENI_2]),
        ({"cidr": "10.1.1.0/24"}, [seed.ENI_1, seed.ENI_2, seed.ENI_C]),
        ({"cidr": "10.1.1.64/26"}, [seed.ENI_2]),
        ({"cidr": "10.1.1.72/30"}, [seed.ENI_2]),
        ({"cidr": "::ffff:10.1.1.64/122"}, [seed.ENI_2]),
        ({"cidr": "2001:db8::/64"}, [seed.ENI_1]),
        ({"cidr": "192.168.0.0/16"}, []),
        ({"region": "us-east-1"}, []),
    ],
)
async def test_enis_are_filtered_when_a_filter_is_given(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    response = await get(client, "/enis", **params)

    assert response.status_code == 200, response.text
    assert ids(response, "eni_id") == sorted(expected)


async def test_eni_shows_addresses_groups_and_attachment_when_fetched(
    client: httpx.AsyncClient,
) -> None:
    eni = (await get(client, f"/enis/{seed.ENI_1}")).json()

    addresses = {(a["address"], a["kind"]) for a in eni["addresses"]}
    assert addresses == {
        ("10.1.1.10", "private_ipv4"),
        ("10.1.1.11", "private_ipv4"),
        ("203.0.113.10", "public_ipv4"),
        ("2001:db8::10", "ipv6"),
    }
    assert eni["addresses"][0]["is_primary"] is True
    assert eni["security_groups"] == [
        {"group_id": seed.GROUP, "group_name": "web", "owner_account_id": seed.A}
    ]
    assert eni["attachment"]["instance_id"] == seed.INSTANCE
    assert eni["mac_address"] == "02:00:00:00:00:01"


async def test_security_groups_carry_their_rules_when_listed(
    client: httpx.AsyncClient,
) -> None:
    response = await get(client, "/security-groups", vpc_id=seed.VPC)

    (group,) = response.json()["items"]
    assert [r["rule_id"] for r in group["rules"]] == ["sgr-0a000001", "sgr-0a000002"]
    assert group["rules"][0]["from_port"] == 443
    assert group["rules"][0]["cidr_ipv4"] == "0.0.0.0/0"


async def test_subnets_and_instances_are_filtered_when_asked(
    client: httpx.AsyncClient,
) -> None:
    subnets = await get(
        client, "/subnets", vpc_id=seed.VPC, availability_zone="eu-west-1b"
    )
    running = await get(client, "/instances", state="running", owner_account_id=seed.A)
    stopped = await get(client, "/instances", state="stopped")
    instance = await get(client, f"/instances/{seed.INSTANCE}")

    assert ids(subnets, "subnet_id") == [seed.SUBNET_2]
    assert ids(running, "instance_id") == [seed.INSTANCE]
    assert ids(stopped, "instance_id") == []
    assert instance.json()["public_ip"] == "203.0.113.10"


async def test_pages_cover_every_row_once_when_the_cursor_is_followed(
    client: httpx.AsyncClient,
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await get(client, "/enis", **params)
        seen += ids(response, "eni_id")
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == [seed.ENI_1, seed.ENI_3, seed.ENI_2, seed.ENI_C]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/vpcs/not-a-vpc", "vpc_id"),
        ("/subnets/subnet-XYZ", "subnet_id"),
        ("/security-groups/sg-", "group_id"),
        ("/enis/eni-zz", "eni_id"),
        ("/instances/i-!", "instance_id"),
    ],
)
async def test_malformed_ids_are_refused_when_looked_up(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    response = await get(client, path)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid"
    assert response.json()["fields"][0]["field"] == field


@pytest.mark.parametrize(
    "path", ["/vpcs/vpc-0fffffff", "/enis/eni-0fffffff", "/instances/i-0fffffff"]
)
async def test_unknown_ids_are_not_found_when_looked_up(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await get(client, path)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"owner": seed.A}, "owner", "unknown query parameter"),
        ({"cursor": "garbage"}, "cursor", "not a cursor"),
        ({"cursor": "garbage!"}, "cursor", "pattern"),
        ({"cursor": "eyJzIjoidGFza3MiLCJrIjpbImEiLCJiIl19"}, "cursor", "another list"),
        (
            {"cursor": "eyJzIjogImVuaXMiLCAiayI6IFsiXHUwMDAwIl19"},
            "cursor",
            "not a cursor",
        ),
        ({"cursor": "eyJzIjoiZW5pcyIsImsiOlsiXHVkODAwIl19"}, "cursor", "not a cursor"),
        ({"cidr": "10.1.0.0/33"}, "cidr", "not an IPv4 or IPv6 CIDR"),
        ({"cidr": "banana"}, "cidr", "not an IPv4 or IPv6 CIDR"),
        ({"cidr": "fe80::%eth0/10"}, "cidr", "drop the zone"),
        ({"owner_account_id": "12345"}, "owner_account_id", "pattern"),
        ({"has_public_ip": "maybe"}, "has_public_ip", "boolean"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 5000}, "limit", "less than or equal to 1000"),
        ({"tag": "=value"}, "tag", "Key=Value"),
        ({"region": [seed.REGION, "us-east-1"]}, "region", "more than once"),
        ({"limit": [5, 7]}, "limit", "more than once"),
    ],
)
async def test_bad_list_input_is_refused_with_the_field_when_given(
    client: httpx.AsyncClient, params: dict[str, object], field: str, words: str
) -> None:
    response = await get(client, "/enis", **params)

    body = response.json()
    assert response.status_code == 422, body
    assert body["fields"][0]["field"] == field
    assert words in body["message"] + body["fields"][0]["reason"]
