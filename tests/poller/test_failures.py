"""Failures: each is reported with its kind and reason, never as an empty region."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
import pytest

from services.poller.aws import AwsAccess
from services.poller.service import Poller, PollLimits
from shared.events import FailureKind
from tests.poller.fakes import (
    FakeClock,
    Faults,
    RecordingOutbox,
    account_session,
    always,
    delayed,
    error_response,
    every_nth,
    ok_response,
    poll_for,
)

ACCOUNT = "333333333333"
OTHER_ACCOUNT = "444444444444"
REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture(scope="module")
def enis(moto: None) -> dict[str, set[str]]:
    """A few ENIs in each region of the account; their ids per region."""
    session = account_session(ACCOUNT)
    found = {}
    for region in REGIONS:
        ec2 = session.client("ec2", region_name=region)
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        for _ in range(3):
            ec2.create_network_interface(SubnetId=subnet)
        found[region] = {
            eni["NetworkInterfaceId"]
            for eni in ec2.describe_network_interfaces()["NetworkInterfaces"]
        }
    return found


async def _poll(
    faults: Faults,
    *,
    account: str = ACCOUNT,
    max_attempts: int = 3,
    region_seconds: float = 30,
    clock: Callable[[], Any] | None = None,
    **fields: Any,
) -> RecordingOutbox:
    outbox = RecordingOutbox()
    aws = AwsAccess(client_hook=faults.register, max_attempts=max_attempts, clock=clock)
    poller = Poller(
        aws,
        outbox,
        PollLimits(calls_per_second=50, region_timeout_seconds=region_seconds),
    )
    await poller.poll(poll_for(account, REGIONS, **fields))
    return outbox


def _throttled() -> Any:
    return error_response(400, "RequestLimitExceeded", "Request limit exceeded.")


@pytest.mark.parametrize(
    ("fault", "kind", "words"),
    [
        (
            always(lambda: error_response(403, "UnauthorizedOperation", "no")),
            FailureKind.ACCESS_DENIED,
            "UnauthorizedOperation",
        ),
        (
            always(lambda: error_response(401, "OptInRequired", "opt in first")),
            FailureKind.REGION_NOT_ENABLED,
            "OptInRequired",
        ),
        (always(_throttled), FailureKind.THROTTLED, "RequestLimitExceeded"),
        (delayed(2.0), FailureKind.TIMEOUT, "within 5 s"),
        (
            always(lambda: error_response(400, "UnsupportedOperation", "odd")),
            FailureKind.OTHER,
            "UnsupportedOperation",
        ),
        (
            always(
                lambda: ok_response(b"<html><body>Sign in to the wifi</body></html>")
            ),
            FailureKind.OTHER,
            "has no SecurityGroupRules",
        ),
        (
            always(
                lambda: ok_response(b"<Response><requestId>x</requestId></Response>")
            ),
            FailureKind.OTHER,
            "has no SecurityGroupRules",
        ),
        (always(lambda: ok_response(b"")), FailureKind.OTHER, "could not be read"),
    ],
    ids=[
        "access_denied",
        "region_not_enabled",
        "throttled",
        "timeout",
        "other",
        "html_page",
        "xml_without_the_list",
        "empty_answer",
    ],
)
async def test_region_is_reported_failed_and_others_still_emitted_when_it_fails(
    enis: dict[str, set[str]], fault: Any, kind: FailureKind, words: str
) -> None:
    faults = Faults()
    faults.by_region["eu-west-1"] = fault

    outbox = await _poll(faults, max_attempts=2, region_seconds=5.0)

    [failed] = outbox.failed
    assert (failed.region, failed.kind) == ("eu-west-1", kind)
    assert words in failed.reason
    assert failed.regions == ["eu-west-1"]
    assert list(outbox.discovered) == ["us-east-1"]
    assert {e.eni_id for e in outbox.discovered["us-east-1"].enis} == enis["us-east-1"]


async def test_whole_poll_fails_with_reason_when_assume_role_is_denied(
    enis: dict[str, set[str]],
) -> None:
    faults = Faults()
    faults.sts = always(lambda: error_response(403, "AccessDenied", "not trusted"))

    outbox = await _poll(faults)

    [failed] = outbox.failed
    assert (failed.region, failed.regions) == (None, REGIONS)
    assert failed.kind == FailureKind.ASSUME_ROLE_FAILED
    assert "AccessDenied" in failed.reason and "not trusted" in failed.reason
    assert outbox.discovered == {}
    assert len(outbox.started) == 1


async def test_whole_poll_fails_when_the_role_belongs_to_another_account(
    enis: dict[str, set[str]],
) -> None:
    faults = Faults()
    foreign_role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/PaloInventoryInspectionRole"

    outbox = await _poll(faults, role_arn=foreign_role)

    [failed] = outbox.failed
    assert failed.kind == FailureKind.IDENTITY_MISMATCH
    assert OTHER_ACCOUNT in failed.reason and ACCOUNT in failed.reason
    assert (failed.region, failed.regions) == (None, REGIONS)
    assert outbox.discovered == {}


async def test_snapshot_is_complete_when_a_third_of_the_calls_are_throttled(
    enis: dict[str, set[str]],
) -> None:
    faults = Faults()
    faults.by_region["us-east-1"] = every_nth(3, _throttled)

    outbox = await _poll(faults, max_attempts=4)

    assert outbox.failed == []
    assert {e.eni_id for e in outbox.discovered["us-east-1"].enis} == enis["us-east-1"]
    assert len(outbox.discovered["us-east-1"].vpcs) == len(
        account_session(ACCOUNT).client("ec2").describe_vpcs()["Vpcs"]
    )


async def test_a_region_waiting_for_a_thread_held_by_a_timed_out_one_still_succeeds(
    enis: dict[str, set[str]],
) -> None:
    first = threading.Event()

    def hangs_once(request: Any) -> Any:
        if not first.is_set():
            first.set()
            threading.Event().wait(6.0)  # a read that outlives its region
        return None

    faults = Faults()
    faults.by_region["us-east-1"] = hangs_once
    outbox = RecordingOutbox()
    aws = AwsAccess(client_hook=faults.register, max_attempts=2)
    with ThreadPoolExecutor(1) as executor:  # both regions share one thread
        poller = Poller(
            aws,
            outbox,
            PollLimits(calls_per_second=50, region_timeout_seconds=4.0),
            executor,
        )
        await poller.poll(poll_for(ACCOUNT, ["us-east-1", "eu-west-1"]))

    assert [(f.region, f.kind) for f in outbox.failed] == [
        ("us-east-1", FailureKind.TIMEOUT)
    ]
    assert {e.eni_id for e in outbox.discovered["eu-west-1"].enis} == enis["eu-west-1"]


@pytest.mark.parametrize(
    ("inside", "words"),
    [
        (b"", "a reservation has no Instances"),
        (
            b"<instancesSet><item><instanceId>i-1</instanceId></item></instancesSet>",
            "an instance has no State",
        ),
    ],
)
async def test_a_reservation_without_its_instances_fails_the_region(
    enis: dict[str, set[str]], inside: bytes, words: str
) -> None:
    reservation = (
        b'<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>x</requestId><reservationSet><item><reservationId>r-1"
        b"</reservationId><ownerId>333333333333</ownerId>"
        + inside
        + b"</item></reservationSet></DescribeInstancesResponse>"
    )

    def stripped(request: Any) -> Any:
        body = request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        if "Action=DescribeInstances&" in text + "&":
            return ok_response(reservation)
        return None

    faults = Faults()
    faults.by_region["eu-west-1"] = stripped

    outbox = await _poll(faults)

    [failed] = outbox.failed
    assert (failed.region, failed.kind) == ("eu-west-1", FailureKind.OTHER)
    assert words in failed.reason
    assert list(outbox.discovered) == ["us-east-1"]


async def test_a_throttled_call_is_sent_max_attempts_times_in_all(
    enis: dict[str, set[str]],
) -> None:
    sent: list[object] = []

    def throttled(request: Any) -> Any:
        sent.append(request)
        return _throttled()

    faults = Faults()
    faults.by_region["eu-west-1"] = throttled

    outbox = await _poll(faults, max_attempts=3)

    [failed] = outbox.failed
    assert failed.kind is FailureKind.THROTTLED
    assert len(sent) == 3  # the first request and two retries, then the region fails


async def test_role_credentials_are_renewed_when_they_expire_mid_poll(
    enis: dict[str, set[str]],
) -> None:
    clock = FakeClock()
    faults = Faults()
    keys: list[str] = []

    def expire_after_two_calls(request: Any) -> Any:
        key = request.headers["Authorization"].split(b"Credential=")[1].split(b"/")[0]
        keys.append(key.decode())
        if len(keys) == 2:
            # An hour passes after this call: the role session is about to end,
            # and AWS refuses its key from then on.
            clock.offset = timedelta(minutes=59, seconds=55)
        elif clock.offset and keys[-1] == keys[0]:
            return error_response(400, "ExpiredToken", "token expired")
        return None

    faults.by_region["us-east-1"] = expire_after_two_calls
    outbox = await _poll(faults, clock=clock)

    assert outbox.failed == []
    assert {e.eni_id for e in outbox.discovered["us-east-1"].enis} == enis["us-east-1"]
    assert len(faults.calls("AssumeRole")) >= 2
    assert len(set(keys)) >= 2
    assert keys[0] not in keys[2:]


def test_moto_session_helper_is_in_the_right_account(moto: None) -> None:
    session = account_session(ACCOUNT)

    identity = session.client("sts").get_caller_identity()

    assert identity["Account"] == ACCOUNT
    assert isinstance(session, boto3.Session)
