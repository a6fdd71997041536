"""AWS stand-ins for the poller's tests: moto with AWS's paging, faults, clocks."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto.core.responses import ActionResult
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from nats.js import JetStreamContext

from shared.bus import BusNames
from shared.events import (
    AccountPoll,
    DiscoveryFailed,
    ResourcesDiscovered,
    TaskStarted,
)

ROLE = "PaloInventoryInspectionRole"


@contextlib.contextmanager
def moto_pages_enis() -> Iterator[None]:
    """Make moto honour MaxResults/NextToken on DescribeNetworkInterfaces, as AWS does.

    moto returns every ENI in one response; AWS returns at most MaxResults.
    """
    original = ElasticNetworkInterfaces.describe_network_interfaces

    def paged(self: Any) -> ActionResult:
        eni_ids = self._get_param("NetworkInterfaceIds", [])
        filters = self._filters_from_querystring()
        enis = sorted(
            self.ec2_backend.get_all_network_interfaces(eni_ids, filters),
            key=lambda eni: eni.id,
        )
        size = self._get_int_param("MaxResults") or len(enis) or 1
        start = int(self._get_param("NextToken") or 0)
        result: dict[str, Any] = {"NetworkInterfaces": enis[start : start + size]}
        if start + size < len(enis):
            result["NextToken"] = str(start + size)
        return ActionResult(result)

    responses: Any = ElasticNetworkInterfaces
    responses.describe_network_interfaces = paged
    try:
        yield
    finally:
        responses.describe_network_interfaces = original


def account_session(account_id: str, endpoint_url: str | None = None) -> boto3.Session:
    """A session acting in `account_id` (moto maps assumed-role keys to accounts)."""
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint_url)
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{ROLE}", RoleSessionName="setup"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def poll_for(
    account_id: str, regions: list[str], **fields: Any
) -> AccountPoll:  # pragma: no cover - trivial
    return AccountPoll(
        task_id=fields.pop("task_id", uuid.uuid4()),
        account_id=account_id,
        role_name=fields.pop("role_name", ROLE),
        regions=regions,
        requested_at=datetime.now(UTC),
        **fields,
    )


def error_response(status: int, code: str, message: str) -> AWSResponse:
    """An EC2/STS-style XML error, as botocore would receive it."""
    body = (
        "<Response><Errors><Error>"
        f"<Code>{code}</Code><Message>{message}</Message>"
        "</Error></Errors><RequestID>fake</RequestID></Response>"
    ).encode()
    raw = _Raw(body)
    return AWSResponse("https://fake", status, {}, raw)


def ok_response(body: bytes) -> AWSResponse:
    """A 200 answer with `body`, whatever it holds."""
    return AWSResponse("https://fake", 200, {}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


Fault = Callable[[Any], AWSResponse | None]
"""Given a request, answer it instead of AWS (or None to let it through)."""


class Faults:
    """A client hook that answers chosen requests with errors, per region.

    `register` is given to `AwsAccess(client_hook=...)`. Each fault sees the
    botocore request and returns a response to short-circuit it, or None.
    """

    def __init__(self) -> None:
        self.by_region: dict[str, Fault] = {}
        self.sts: Fault | None = None
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def register(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        region = client.meta.region_name

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            with self._lock:
                self.requests.append((region, model.name, dict(params)))

        def before_send(request: Any, **_: Any) -> AWSResponse | None:
            fault = self.sts if service == "sts" else self.by_region.get(region)
            return fault(request) if fault is not None else None

        client.meta.events.register("before-parameter-build", record)
        client.meta.events.register_first("before-send", before_send)

    def calls(self, operation: str, region: str | None = None) -> list[dict[str, Any]]:
        return [
            params
            for where, name, params in self.requests
            if name == operation and (region is None or where == region)
        ]


def every_nth(n: int, response: Callable[[], AWSResponse]) -> Fault:
    """Fail one request in `n`, starting with the first."""
    counter = iter(range(1_000_000))

    def fault(_: Any) -> AWSResponse | None:
        return response() if next(counter) % n == 0 else None

    return fault


def always(response: Callable[[], AWSResponse]) -> Fault:
    return lambda _: response()


def delayed(seconds: float) -> Fault:
    def fault(_: Any) -> None:
        threading.Event().wait(seconds)

    return fault


class FakeClock:
    """Wall-clock time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class RecordingOutbox:
    """An outbox that keeps what a poll published, in order."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.discovered: dict[str, Any] = {}
        self.failed: list[Any] = []
        self.order: list[str] = []

    async def task_started(self, event: Any) -> None:
        self.started.append(event)
        self.order.append("started")

    async def region_discovered(
        self,
        poll: AccountPoll,
        region: str,
        started_at: datetime,
        finished_at: datetime,
        snapshot: Any,
    ) -> None:
        self.discovered[region] = snapshot
        self.order.append(f"discovered:{region}")

    async def discovery_failed(self, event: Any) -> None:
        self.failed.append(event)
        self.order.append(f"failed:{event.region}")


# --- Bus helpers ---------------------------------------------------------------


async def publish_polls(
    js: JetStreamContext, names: BusNames, polls: list[Any]
) -> None:
    for poll in polls:
        await js.publish(names.account_poll, poll.model_dump_json().encode())


async def collect(
    js: JetStreamContext, names: BusNames, until: Any, within: float = 30
) -> dict[str, list[Any]]:
    """Read the discovery stream until `until(events)` holds (or time runs out)."""
    subscription = await js.pull_subscribe(
        "", durable="test-reader", stream=names.discovery_stream
    )
    models = {
        names.tasks_started: TaskStarted,
        names.resources_discovered: ResourcesDiscovered,
        names.discovery_failed: DiscoveryFailed,
    }
    events: dict[str, list[Any]] = {subject: [] for subject in models}
    deadline = time.monotonic() + within
    while not until(events) and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            for message in await subscription.fetch(50, timeout=0.5):
                model = models[message.subject]
                events[message.subject].append(model.model_validate_json(message.data))
                await message.ack()
    await subscription.unsubscribe()
    return events
