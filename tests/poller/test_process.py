"""`python -m services.poller` as other services run it: against a moto server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from nats.aio.client import Client as NatsClient

from shared import devservers
from shared.bus import BusNames, ensure_poller_consumer
from tests.poller.conftest import FAKE_BASE_CREDENTIALS
from tests.poller.fakes import collect, poll_for, publish_polls

ROOT = Path(__file__).resolve().parents[2]
ACK_WAIT_SECONDS = 3


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = devservers.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _start_poller(
    nats_url: str, names: BusNames, moto_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **FAKE_BASE_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_url,
        "NATS_URL": nats_url,
        "NATS_NAMESPACE": names.namespace,
        "SCHEDULED_POLLING_MAX_CONCURRENT": "2",
        # Six describe calls at one a second: a poll of ~5 s, long enough to kill.
        "POLLER_CALLS_PER_SECOND": "1",
        "POLLER_ACK_WAIT_SECONDS": str(ACK_WAIT_SECONDS),
        "LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.poller"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


async def test_account_is_polled_again_when_its_poller_is_killed_mid_poll(
    nats_client: NatsClient,
    names: BusNames,
    nats_url: str,
    moto_url: str,
    tmp_path: Path,
) -> None:
    js = nats_client.jetstream()
    await ensure_poller_consumer(js, names, 2, timedelta(seconds=ACK_WAIT_SECONDS))
    poll = poll_for("246824682468", ["us-east-1"])
    await publish_polls(js, names, [poll])

    first = _start_poller(nats_url, names, moto_url, tmp_path / "first.log")
    try:
        before = await collect(js, names, lambda e: e[names.tasks_started], 30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    second = _start_poller(nats_url, names, moto_url, tmp_path / "second.log")
    try:
        after = await collect(js, names, lambda e: e[names.resources_discovered], 60)
    finally:
        second.send_signal(signal.SIGTERM)
        exit_code = second.wait(15)

    log = (tmp_path / "second.log").read_text()
    [killed] = before[names.tasks_started]
    [repoll] = after[names.tasks_started]
    [found] = after[names.resources_discovered]
    assert before[names.resources_discovered] == []
    assert (killed.task_id, killed.attempt) == (poll.task_id, 1)
    assert (repoll.task_id, repoll.attempt) == (poll.task_id, 2)
    assert (found.task_id, found.region) == (poll.task_id, "us-east-1")
    assert found.snapshot is not None and found.snapshot.vpcs
    assert {vpc.owner_id for vpc in found.snapshot.vpcs} == {poll.account_id}
    assert exit_code == 0
    assert '"event": "region_discovered"' in log and '"poller_stopped"' in log
