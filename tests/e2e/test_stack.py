"""The four services as separate processes, on real NATS and PostgreSQL, polling
moto's server with several accounts, driven only through the API.

One stack serves the module: a database and a bus namespace of its own, moto
with the sample estate (`deploy.estate`), the scheduler, two pollers, the
reconciler and the API as child processes. Every test compares everything the
API lists with everything moto holds.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from deploy.estate import (
    ACCOUNTS,
    ANALYTICS,
    EU,
    NETWORK,
    PAYMENTS,
    US,
    Estate,
    ec2_client,
)
from deploy.processes import ServiceGroup
from deploy.standin import standin
from shared import devservers
from shared.bus import BusNames
from tests.conftest import RUN_ID, migrated_database
from tests.e2e.moto_view import KINDS, api_inventory, differences, moto_inventory

pytestmark = pytest.mark.slow

CYCLE_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 45.0
FINISHED = {"succeeded", "partially_failed", "failed", "skipped", "cancelled"}


@dataclass
class Stack:
    api: httpx.AsyncClient
    services: ServiceGroup
    estate: Estate
    log_dir: Path

    def logs(self) -> str:
        """The tail of every service's log, to explain a failure."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


@pytest.fixture(scope="module")
def estate() -> Iterator[Estate]:
    with standin() as seeded:
        yield seeded


@pytest.fixture(scope="module")
async def e2e_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with migrated_database(postgres_server_url, f"inventory_e2e_{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="module")
async def e2e_namespace(nats_url: str) -> AsyncIterator[str]:
    namespace = f"e2e{RUN_ID}"
    yield namespace
    client = await nats.connect(nats_url)
    js = client.jetstream()
    for stream in await js.streams_info():
        if stream.config.name and namespace in stream.config.name.lower():
            await js.delete_stream(stream.config.name)
    await client.drain()


@pytest.fixture(scope="module")
async def stack(
    e2e_database: str,
    nats_url: str,
    e2e_namespace: str,
    estate: Estate,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    token = secrets.token_urlsafe(24)
    port = devservers.free_port()
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    services = ServiceGroup(
        env={
            "DATABASE_URL": e2e_database,
            "NATS_URL": nats_url,
            "NATS_NAMESPACE": e2e_namespace,
            "LOG_FORMAT": "json",
            "AWS_ENDPOINT_URL": estate.endpoint_url,
            "AWS_ACCESS_KEY_ID": "e2e",
            "AWS_SECRET_ACCESS_KEY": "e2e",
            "AWS_DEFAULT_REGION": US,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "API_ADMIN_TOKEN": token,
            "SCHEDULED_POLLING_CRON": "0 0 1 1 *",
            "SCHEDULED_POLLING_STAGGER_SECONDS": "0",
            "SCHEDULED_POLLING_MAX_CONCURRENT": "3",
            "POLLER_CALLS_PER_SECOND": "100",
            "TASK_TIMEOUT_SECONDS": "300",
            # A killed reconciler's unacknowledged snapshots come back quickly.
            "RECONCILER_ACK_WAIT_SECONDS": "4",
        },
        log_dir=log_dir,
    )
    for name in ("reconciler", "scheduler", "api"):
        services.start(name)
    for index in (1, 2):
        services.start(f"poller-{index}", module="poller")
    api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    running = Stack(api, services, estate, log_dir)
    try:
        await wait_ready(running)
        for account in ACCOUNTS:
            response = await api.post(
                "/api/v1/accounts",
                json={
                    "account_id": account.account_id,
                    "account_name": account.account_name,
                    "auth_method": "instance_role",
                    "default_regions": list(account.regions),
                },
            )
            assert response.status_code == 201, response.text
        yield running
    finally:
        await api.aclose()
        services.stop_all()


async def wait_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert not stack.services.exited(), stack.logs()
        try:
            if (await stack.api.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"the API was not ready in time\n{stack.logs()}")


async def start_cycle(stack: Stack) -> str:
    response = await stack.api.post("/api/v1/polls")

    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def wait_for_task(stack: Stack, task_id: str) -> dict[str, Any]:
    """The task once finished; fails with the services' logs after the timeout."""
    deadline = time.monotonic() + CYCLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        response = await stack.api.get(f"/api/v1/tasks/{task_id}")
        if response.status_code == 200 and response.json()["status"] in FINISHED:
            task: dict[str, Any] = response.json()
            return task
        await asyncio.sleep(0.5)
    raise AssertionError(f"task {task_id} did not finish\n{stack.logs()}")


async def run_cycle(stack: Stack) -> dict[str, Any]:
    return await wait_for_task(stack, await start_cycle(stack))


async def listed(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every item of every inventory list, following the cursors."""
    items: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        items[kind], cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = await stack.api.get(f"/api/v1/{kind}", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            items[kind] += page["items"]
            if not (cursor := page["next_cursor"]):
                break
    return items


def first_seen(items: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], str]:
    keys = {
        "vpcs": "vpc_id",
        "subnets": "subnet_id",
        "security-groups": "group_id",
        "enis": "eni_id",
        "instances": "instance_id",
    }
    return {
        (kind, item[keys[kind]]): item["first_seen_at"]
        for kind in KINDS
        for item in items[kind]
    }


def children_statuses(task: dict[str, Any]) -> dict[str, str]:
    return {child["account_id"]: child["status"] for child in task["child_tasks"]}


async def test_inventory_matches_aws_when_a_cycle_finishes(stack: Stack) -> None:
    task = await run_cycle(stack)
    items = await listed(stack)

    assert task["status"] == "succeeded", task
    assert children_statuses(task) == {a.account_id: "succeeded" for a in ACCOUNTS}
    assert (
        differences(moto_inventory(stack.estate.endpoint_url), api_inventory(items))
        == []
    )
    assert len(items["enis"]) >= 14


async def test_shared_vpc_is_reported_with_its_owner_and_its_participants_enis(
    stack: Stack,
) -> None:
    estate = stack.estate
    shared = estate.vpcs["shared-services"]
    await run_cycle(stack)

    vpc = (await stack.api.get(f"/api/v1/vpcs/{shared}")).json()
    enis = (await stack.api.get("/api/v1/enis", params={"vpc_id": shared})).json()
    owners = {eni["owner_account_id"] for eni in enis["items"]}

    assert vpc["owner_account_id"] == NETWORK
    assert owners == {NETWORK, PAYMENTS}


async def test_public_and_secondary_addresses_lead_to_their_eni_when_looked_up(
    stack: Stack,
) -> None:
    estate = stack.estate
    await run_cycle(stack)
    ec2 = ec2_client(estate.endpoint_url, PAYMENTS, US)
    eni_id = estate.enis["payments-ingress"]
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    secondary = [
        address["PrivateIpAddress"]
        for address in described["NetworkInterfaces"][0]["PrivateIpAddresses"]
        if not address["Primary"]
    ]

    public = await stack.api.get(
        f"/api/v1/ip/{estate.public_ips['payments-ingress-eip']}"
    )
    private = await stack.api.get(f"/api/v1/ip/{secondary[-1]}")

    assert public.status_code == 200, public.text
    assert [m["eni"]["eni_id"] for m in public.json()["matches"]] == [eni_id]
    assert eni_id in [m["eni"]["eni_id"] for m in private.json()["matches"]]


async def test_deleted_resources_go_and_the_rest_stays_when_polled_again(
    stack: Stack,
) -> None:
    estate = stack.estate
    await run_cycle(stack)
    before = first_seen(await listed(stack))
    network_us = ec2_client(estate.endpoint_url, NETWORK, US)
    payments_us = ec2_client(estate.endpoint_url, PAYMENTS, US)
    payments_eu = ec2_client(estate.endpoint_url, PAYMENTS, EU)
    gone = {
        ("enis", estate.enis["payments-spare"]),
        ("enis", estate.enis["bastion-mgmt"]),
        ("instances", estate.instances["payments-eu-1"]),
        ("vpcs", estate.vpcs["retired"]),
    }
    network_us.detach_network_interface(
        AttachmentId=network_us.describe_network_interfaces(
            NetworkInterfaceIds=[estate.enis["bastion-mgmt"]]
        )["NetworkInterfaces"][0]["Attachment"]["AttachmentId"]
    )
    network_us.delete_network_interface(NetworkInterfaceId=estate.enis["bastion-mgmt"])
    payments_us.delete_network_interface(
        NetworkInterfaceId=estate.enis["payments-spare"]
    )
    payments_eu.terminate_instances(InstanceIds=[estate.instances["payments-eu-1"]])
    network_us.delete_vpc(VpcId=estate.vpcs["retired"])

    task = await run_cycle(stack)
    items = await listed(stack)
    after = first_seen(items)

    assert task["status"] == "succeeded", task
    assert differences(moto_inventory(estate.endpoint_url), api_inventory(items)) == []
    assert gone <= set(before)
    assert not gone & set(after)
    assert {key: before[key] for key in after} == after


async def recorded(stack: Stack, task_id: str) -> None:
    """Wait until the reconciler has recorded the task (the cycle is under way)."""
    deadline = time.monotonic() + CYCLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if (await stack.api.get(f"/api/v1/tasks/{task_id}")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} was never recorded\n{stack.logs()}")


async def test_nothing_is_lost_when_the_reconciler_is_killed_during_a_cycle(
    stack: Stack,
) -> None:
    estate = stack.estate
    analytics = ec2_client(estate.endpoint_url, ANALYTICS, EU)
    added = analytics.create_network_interface(
        SubnetId=estate.subnets["analytics-b"],
        Groups=[estate.groups["analytics-workers"]],
        SecondaryPrivateIpAddressCount=1,
    )["NetworkInterface"]["NetworkInterfaceId"]

    task_id = await start_cycle(stack)
    await recorded(stack, task_id)
    stack.services.kill("reconciler")
    during = (await stack.api.get(f"/api/v1/tasks/{task_id}")).json()
    await asyncio.sleep(1)
    stack.services.start("reconciler")
    task = await wait_for_task(stack, task_id)
    items = await listed(stack)

    assert during["status"] not in FINISHED, "killed before the cycle finished"
    assert task["status"] == "succeeded", task
    assert children_statuses(task) == {a.account_id: "succeeded" for a in ACCOUNTS}
    assert added in {eni["eni_id"] for eni in items["enis"]}
    assert differences(moto_inventory(estate.endpoint_url), api_inventory(items)) == []


async def test_nothing_is_lost_when_the_reconciler_is_down_for_a_whole_cycle(
    stack: Stack, nats_url: str, e2e_namespace: str
) -> None:
    estate = stack.estate
    analytics = ec2_client(estate.endpoint_url, ANALYTICS, EU)
    analytics.delete_network_interface(
        NetworkInterfaceId=estate.enis["analytics-notebook"]
    )
    stack.services.kill("reconciler")

    task_id = await start_cycle(stack)
    await polls_done(nats_url, e2e_namespace)
    while_down = await stack.api.get(f"/api/v1/tasks/{task_id}")
    stack.services.start("reconciler")
    task = await wait_for_task(stack, task_id)
    items = await listed(stack)

    assert while_down.status_code == 404, "nothing is recorded while it is down"
    assert task["status"] == "succeeded", task
    assert estate.enis["analytics-notebook"] not in {e["eni_id"] for e in items["enis"]}
    assert differences(moto_inventory(estate.endpoint_url), api_inventory(items)) == []


async def polls_done(nats_url: str, namespace: str) -> None:
    """Wait until the pollers have taken and finished every queued account poll."""
    names = BusNames(namespace)
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        deadline = time.monotonic() + CYCLE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            info = await js.consumer_info(names.polls_stream, names.poller_consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.3)
    finally:
        await client.drain()
    raise AssertionError("the pollers did not finish the cycle's polls")
