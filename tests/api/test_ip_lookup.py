from __future__ import annotations

import httpx
import pytest

from tests.api import seed
from tests.api.conftest import READER


@pytest.fixture(scope="module")
def client(seeded_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return seeded_client


async def lookup(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.get(f"/api/v1/ip/{address}", headers=READER)


@pytest.mark.parametrize(
    ("address", "eni", "kind", "matched"),
    [
        ("10.1.1.11", seed.ENI_1, "private_ipv4", "10.1.1.11"),
        ("203.0.113.10", seed.ENI_1, "public_ipv4", "203.0.113.10"),
        ("2001:db8::10", seed.ENI_1, "ipv6", "2001:db8::10"),
        ("2001:0db8:0000::0010", seed.ENI_1, "ipv6", "2001:db8::10"),
        ("10.1.1.20", seed.ENI_2, "private_ipv4", "10.1.1.20"),
        ("10.1.1.70", seed.ENI_2, "ipv4_prefix", "10.1.1.64/28"),
        ("10.1.2.30", seed.ENI_3, "private_ipv4", "10.1.2.30"),
        ("::ffff:10.1.2.30", seed.ENI_3, "private_ipv4", "10.1.2.30"),
    ],
)
async def test_the_eni_holding_an_address_is_found_when_it_has_it(
    client: httpx.AsyncClient, address: str, eni: str, kind: str, matched: str
) -> None:
    response = await lookup(client, address)

    assert response.status_code == 200, response.text
    (match,) = response.json()["matches"]
    assert match["eni"]["eni_id"] == eni
    assert match["matched_kind"] == kind
    assert match["matched_address"] == matched


async def test_lookup_shows_instance_subnet_vpc_groups_and_owner_when_found(
    client: httpx.AsyncClient,
) -> None:
    response = await lookup(client, "203.0.113.10")

    (match,) = response.json()["matches"]
    assert match["instance"]["instance_id"] == seed.INSTANCE
    assert match["subnet"]["subnet_id"] == seed.SUBNET_1
    assert match["vpc"]["vpc_id"] == seed.VPC
    assert [g["group_id"] for g in match["security_groups"]] == [seed.GROUP]
    assert match["security_groups"][0]["rules"][0]["from_port"] == 443
    assert match["owner"] == {"account_id": seed.A, "account_name": "alpha"}


async def test_every_holder_is_listed_when_private_ranges_overlap(
    client: httpx.AsyncClient,
) -> None:
    response = await lookup(client, "10.1.1.10")

    matches = response.json()["matches"]
    assert [m["eni"]["eni_id"] for m in matches] == [seed.ENI_1, seed.ENI_C]
    assert matches[1]["owner"] == {"account_id": seed.C, "account_name": None}
    assert matches[1]["vpc"]["vpc_id"] == seed.OTHER_VPC
    assert matches[1]["instance"] is None
    assert matches[1]["security_groups"] == []


async def test_lookup_is_not_found_when_nobody_has_the_address(
    client: httpx.AsyncClient,
) -> None:
    response = await lookup(client, "10.9.9.9")

    assert response.status_code == 404
    assert "10.9.9.9" in response.json()["message"]


@pytest.mark.parametrize(
    "address", ["10.1.1", "999.1.1.1", "banana", "10.1.1.0%2F24", "fe80::1%25eth0"]
)
async def test_invalid_addresses_are_refused_when_looked_up(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await lookup(client, address)

    assert response.status_code == 422, response.text
    assert response.json()["fields"][0]["field"] == "address"


async def test_lookup_shows_each_resource_as_its_own_endpoint_does(
    client: httpx.AsyncClient,
) -> None:
    (match,) = (await lookup(client, "203.0.113.10")).json()["matches"]

    async def detail(path: str) -> object:
        response = await client.get(f"/api/v1/{path}", headers=READER)
        assert response.status_code == 200, response.text
        return response.json()

    assert match["eni"] == await detail(f"enis/{seed.ENI_1}")
    assert match["eni"]["attachment"]["instance_id"] == seed.INSTANCE
    assert match["instance"] == await detail(f"instances/{seed.INSTANCE}")
    assert match["subnet"] == await detail(f"subnets/{seed.SUBNET_1}")
    assert match["vpc"] == await detail(f"vpcs/{seed.VPC}")
    assert match["security_groups"] == [await detail(f"security-groups/{seed.GROUP}")]
