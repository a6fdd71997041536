"""Poller: one region with many ENIs against a local moto server.

Compares the poller's discovery of the region (six describe calls, paged at
1000, turned into the snapshot models) with a bare boto3 paginate loop doing
the same calls in the same run, and reports the poller's peak memory and the
memory it keeps after polling many accounts.

Sizes: BENCH_POLLER_ENIS (default 5000), BENCH_POLLER_ROUNDS (3),
BENCH_POLLER_ACCOUNTS (30).
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from services.poller.aws import PAGE_SIZE, AccountSession, AwsAccess
from shared import devservers
from shared.events import AccountPoll

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "135791357913"
REGION = "us-east-1"
OPERATIONS = {
    "describe_security_group_rules": "SecurityGroupRules",
    "describe_vpcs": "Vpcs",
    "describe_subnets": "Subnets",
    "describe_security_groups": "SecurityGroups",
    "describe_network_interfaces": "NetworkInterfaces",
    "describe_instances": "Reservations",
}

# Runs in the moto server's own process, so its memory is not the poller's.
SERVER = """
import logging, sys
from moto.ec2.models import ec2_backends
from moto.server import ThreadedMotoServer
from tests.poller.fakes import moto_pages_enis

logging.getLogger("werkzeug").setLevel(logging.ERROR)
port, account, region, enis = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with moto_pages_enis():
    backend = ec2_backends[account][region]
    vpc = backend.create_vpc("10.0.0.0/16")
    subnet = backend.create_subnet(vpc.id, "10.0.0.0/16")
    group = backend.create_security_group("bench", "bench", vpc_id=vpc.id)
    for n in range(enis):
        address = f"10.0.{n // 250}.{n % 250 + 4}"
        backend.create_network_interface(subnet.id, address, group_ids=[group.id])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(port), verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()
"""


def _credentials() -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(name, value)


def _start_moto(enis: int) -> tuple[subprocess.Popen[str], str]:
    port = devservers.free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), ACCOUNT, REGION, str(enis)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the moto server did not start")
    devservers.wait_for_port("127.0.0.1", port, timeout=30)
    return process, f"http://127.0.0.1:{port}"


def _poll(account: str) -> AccountPoll:
    return AccountPoll(
        task_id=uuid.uuid4(),
        account_id=account,
        role_name="PaloInventoryInspectionRole",
        regions=[REGION],
        requested_at=datetime.now(UTC),
    )


def _bare_loop(session: AccountSession, endpoint: str) -> int:
    """The same calls with nothing around them: paginate and count."""
    client = boto3.Session(botocore_session=session.session._session).client(
        "ec2", region_name=REGION, endpoint_url=endpoint
    )
    items = 0
    for operation, key in OPERATIONS.items():
        paginator = client.get_paginator(operation)
        for page in paginator.paginate(PaginationConfig={"PageSize": PAGE_SIZE}):
            items += len(page.get(key, []))
    return items


def _discover(aws: AwsAccess, session: AccountSession) -> Any:
    snapshot, _ = aws.discover_region(
        session, REGION, calls_per_second=100, cancelled=threading.Event()
    )
    return snapshot


def _timed(function: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def _retained_after(aws: AwsAccess, accounts: int) -> list[tuple[int, float]]:
    """Memory the poller still holds after polling `accounts` small accounts."""
    points = []
    tracemalloc.start()
    for n in range(1, accounts + 1):
        session = aws.open_account(_poll(f"{900000000000 + n}"))
        _discover(aws, session)
        del session
        if n in (accounts // 3, accounts):
            gc.collect()
            points.append((n, tracemalloc.get_traced_memory()[0] / 2**20))
    tracemalloc.stop()
    return points


def main() -> None:
    enis = int(os.environ.get("BENCH_POLLER_ENIS", "5000"))
    rounds = int(os.environ.get("BENCH_POLLER_ROUNDS", "3"))
    accounts = int(os.environ.get("BENCH_POLLER_ACCOUNTS", "30"))
    _credentials()
    server, endpoint = _start_moto(enis)
    try:
        aws = AwsAccess(endpoint_url=endpoint)
        session = aws.open_account(_poll(ACCOUNT))
        _bare_loop(session, endpoint)  # warm both paths once
        _discover(aws, session)

        bare, poller = [], []
        for _ in range(rounds):
            seconds, items = _timed(_bare_loop, session, endpoint)
            bare.append(seconds)
            seconds, snapshot = _timed(_discover, aws, session)
            poller.append(seconds)
        assert len(snapshot.enis) == enis, (len(snapshot.enis), enis)

        gc.collect()
        tracemalloc.start()
        snapshot = _discover(aws, session)
        body = snapshot.model_dump_json()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        del snapshot, body
        retained = _retained_after(aws, accounts)
    finally:
        server.terminate()
        server.wait(10)

    bare_s, poller_s = statistics.median(bare), statistics.median(poller)
    print(f"region with {enis} ENIs, {items} items, median of {rounds} rounds")
    print(f"  bare boto3 paginate loop: {bare_s:.3f} s")
    print(f"  poller discovery:         {poller_s:.3f} s")
    print(f"  ratio poller / bare:      {poller_s / bare_s:.2f} (target <= 1.2)")
    print(f"  poller peak memory (discovery + snapshot JSON): {peak:.1f} MiB")
    for polled, mib in retained:
        print(f"  memory held after polling {polled:3d} accounts: {mib:.1f} MiB")


if __name__ == "__main__":
    main()
