"""AWS adapter: reach an account through its role and describe one region.

Everything here is synchronous boto3, meant to run in worker threads. Errors
leave as `DiscoveryError` with a `FailureKind`, never as an empty result.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from services.poller import convert
from shared.events import (
    AccountPoll,
    FailureKind,
    RegionSnapshot,
    SecurityGroupRule,
)

PAGE_SIZE = 1000
"""The largest page every describe call used here accepts."""

ClientHook = Callable[[Any], None]
"""Called with each client created (tests add stubs or faults through it)."""

Clock = Callable[[], datetime]

_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
}
_REGION_NOT_ENABLED = {"OptInRequired", "RegionDisabledException", "InvalidRegion"}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
}


class DiscoveryError(Exception):
    """A region, or a whole poll, could not be discovered; `kind` says why."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason[:4000]


class RegionCancelled(Exception):
    """The region's discovery was called off (its time ran out)."""


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def role_arn(poll: AccountPoll) -> str:
    """The full role ARN given, or the one the role name makes in the partition."""
    if poll.role_arn:
        return poll.role_arn
    partition = partition_of(poll.regions[0])
    return f"arn:{partition}:iam::{poll.account_id}:role/{poll.role_name}"


def session_name(task_id: uuid.UUID) -> str:
    """The RoleSessionName: names the task, so CloudTrail tells which poll it was."""
    return f"inventory-poll-{task_id}"


def classify(error: BaseException) -> tuple[FailureKind, str]:
    """The failure kind of an AWS error, and a reason an operator can act on."""
    if isinstance(error, DiscoveryError):
        return error.kind, error.reason
    if isinstance(error, RegionCancelled):
        return FailureKind.TIMEOUT, str(error)
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "Unknown"))
        message = str(details.get("Message", ""))
        operation = error.operation_name
        reason = f"{operation}: {code}: {message}".strip(": ")
        if code in _THROTTLED:
            attempts = error.response.get("ResponseMetadata", {}).get(
                "RetryAttempts", 0
            )
            return FailureKind.THROTTLED, f"{reason} (after {attempts} retries)"
        if code in _ACCESS_DENIED:
            return FailureKind.ACCESS_DENIED, reason
        if code in _REGION_NOT_ENABLED:
            return FailureKind.REGION_NOT_ENABLED, reason
        if code.startswith(("Invalid", "Validation", "MissingParameter")):
            return FailureKind.INVALID_REQUEST, reason
        return FailureKind.OTHER, reason
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return FailureKind.TIMEOUT, f"{type(error).__name__}: {error}"
    if isinstance(error, NoCredentialsError):
        return FailureKind.ASSUME_ROLE_FAILED, f"no base credentials: {error}"
    if isinstance(error, EndpointConnectionError):
        return FailureKind.OTHER, f"{type(error).__name__}: {error}"
    if isinstance(error, ResponseParserError):
        return FailureKind.OTHER, f"an answer that could not be read: {error}"
    return FailureKind.OTHER, f"{type(error).__name__}: {error}"


class RateLimiter:
    """A token bucket shared by the threads calling one account in one region.

    Holds one second's worth of calls as burst; a call waits for its token
    outside the lock, and gives up at once when the region is cancelled.
    """

    def __init__(self, per_second: float, cancelled: threading.Event) -> None:
        self._rate = per_second
        self._capacity = max(1.0, per_second)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()
        self._cancelled = cancelled

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._updated
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if self._cancelled.wait(wait) if wait > 0 else self._cancelled.is_set():
            raise RegionCancelled("region discovery ran out of time")


@dataclass
class RegionStats:
    """What it took to describe a region: pages and HTTP attempts per operation."""

    pages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: int = 0

    @property
    def calls(self) -> int:
        return sum(self.pages.values())


@dataclass
class AccountSession:
    """Role credentials for one account, renewed before they expire."""

    account_id: str
    role_arn: str
    session: boto3.Session
    credentials: RefreshableCredentials
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def make(self, factory: Callable[[boto3.Session], Any]) -> Any:
        """Run `factory` on the session; boto3 sessions are not thread-safe."""
        with self._lock:
            return factory(self.session)


class AwsAccess:
    """Assumes accounts' roles and describes their regions."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 8,
        retry_mode: Literal["standard", "adaptive"] = "standard",
        base_session: boto3.Session | None = None,
        client_hook: ClientHook | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._base = base_session or boto3.Session()
        self._base_lock = threading.Lock()  # boto3 sessions are not thread-safe
        self._client_hook = client_hook
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        # One loader for every per-account session: service models are parsed
        # once per process, not once per poll.
        self._loader = botocore.loaders.create_loader()
        self._config = Config(
            # total_max_attempts counts the first request too (max_attempts would
            # count only the retries after it).
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="network-inventory-poller",
        )

    def _client(
        self, session: boto3.Session, service: Literal["ec2", "sts"], region: str
    ) -> Any:
        client = session.client(
            service,
            region_name=region,
            endpoint_url=self._endpoint_url,
            config=self._config,
        )
        if self._client_hook is not None:
            self._client_hook(client)
        return client

    def open_account(self, poll: AccountPoll) -> AccountSession:
        """Assume the account's role and check who we became.

        Raises `DiscoveryError` (assume_role_failed or identity_mismatch).
        """
        arn = role_arn(poll)
        region = poll.regions[0]
        try:
            with self._base_lock:
                sts = self._client(self._base, "sts", region)
        except BotoCoreError as error:
            raise DiscoveryError(FailureKind.ASSUME_ROLE_FAILED, str(error)) from error
        request: dict[str, str] = {
            "RoleArn": arn,
            "RoleSessionName": session_name(poll.task_id),
        }
        if poll.external_id:
            request["ExternalId"] = poll.external_id

        def assume() -> dict[str, str]:
            credentials = sts.assume_role(**request)["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        try:
            first = assume()
        except (ClientError, BotoCoreError) as error:
            _, reason = classify(error)
            raise DiscoveryError(
                FailureKind.ASSUME_ROLE_FAILED, f"AssumeRole {arn}: {reason}"
            ) from error
        credentials = RefreshableCredentials(
            access_key=first["access_key"],
            secret_key=first["secret_key"],
            token=first["token"],
            expiry_time=datetime.fromisoformat(first["expiry_time"]),
            refresh_using=assume,
            method="sts-assume-role",
            time_fetcher=self._clock,
        )
        core = botocore.session.get_session()
        core.register_component("data_loader", self._loader)
        core._credentials = credentials  # type: ignore[attr-defined]
        account = AccountSession(
            account_id=poll.account_id,
            role_arn=arn,
            session=boto3.Session(botocore_session=core),
            credentials=credentials,
        )
        self._check_identity(account, region)
        return account

    def _check_identity(self, account: AccountSession, region: str) -> None:
        try:
            sts = account.make(lambda s: self._client(s, "sts", region))
            identity = sts.get_caller_identity()
        except (ClientError, BotoCoreError) as error:
            _, reason = classify(error)
            raise DiscoveryError(
                FailureKind.ASSUME_ROLE_FAILED, f"GetCallerIdentity: {reason}"
            ) from error
        if identity.get("Account") != account.account_id:
            raise DiscoveryError(
                FailureKind.IDENTITY_MISMATCH,
                f"role {account.role_arn} is in account {identity.get('Account')},"
                f" not {account.account_id} ({identity.get('Arn')})",
            )

    def discover_region(
        self,
        account: AccountSession,
        region: str,
        *,
        calls_per_second: float,
        cancelled: threading.Event,
    ) -> tuple[RegionSnapshot, RegionStats]:
        """Describe everything of the region; complete, or `DiscoveryError`."""
        stats = RegionStats()
        try:
            ec2 = account.make(lambda s: self._client(s, "ec2", region))
            _limit(ec2, RateLimiter(calls_per_second, cancelled), stats)
            snapshot = _describe(ec2, stats)
        except (
            ClientError,
            BotoCoreError,
            ResponseParserError,
            RegionCancelled,
        ) as error:
            raise DiscoveryError(*classify(error)) from error
        return snapshot, stats


def _limit(client: Any, limiter: RateLimiter, stats: RegionStats) -> None:
    """Every HTTP attempt (retries included) waits for the region's rate limit."""

    def before_send(**_: Any) -> None:
        stats.requests += 1
        limiter.acquire()

    # First, so that nothing answering a request (a stub, a fake) skips the limit.
    client.meta.events.register_first("before-send.ec2", before_send)


def _items(client: Any, operation: str, key: str, stats: RegionStats) -> Iterator[Any]:
    """The items of every page, page by page, at the largest page size.

    EC2 always names the list, empty or not; botocore reads any answer it
    cannot parse (an HTML page from a proxy, XML without the list) as a page
    with nothing in it. Such a page fails the region: it is no empty region.
    """
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(PaginationConfig={"PageSize": PAGE_SIZE}):
        stats.pages[operation] += 1
        if key not in page:
            api_name = client.meta.method_to_api_mapping.get(operation, operation)
            raise _not_ec2(api_name, f"the answer has no {key}")
        yield from page[key]


def _listing(reservation: Any, key: str) -> Any:
    """A reservation, which EC2 never sends without its instances' list, nor
    an instance without its state (the state tells which are gone)."""
    if key not in reservation:
        raise _not_ec2("DescribeInstances", f"a reservation has no {key}")
    if any("State" not in instance for instance in reservation[key]):
        raise _not_ec2("DescribeInstances", "an instance has no State")
    return reservation


def _not_ec2(api_name: str, what: str) -> DiscoveryError:
    return DiscoveryError(
        FailureKind.OTHER,
        f"{api_name}: {what}, so the answer is not EC2's"
        " (a proxy in the way, or a wrong AWS_ENDPOINT_URL?)",
    )


def _describe(ec2: Any, stats: RegionStats) -> RegionSnapshot:
    rules: dict[str, list[SecurityGroupRule]] = defaultdict(list)
    for item in _items(
        ec2, "describe_security_group_rules", "SecurityGroupRules", stats
    ):
        rule = convert.security_group_rule(item)
        rules[rule.group_id].append(rule)
    return RegionSnapshot(
        vpcs=[convert.vpc(i) for i in _items(ec2, "describe_vpcs", "Vpcs", stats)],
        subnets=[
            convert.subnet(i) for i in _items(ec2, "describe_subnets", "Subnets", stats)
        ],
        security_groups=[
            convert.security_group(item, rules.get(item["GroupId"], []))
            for item in _items(ec2, "describe_security_groups", "SecurityGroups", stats)
        ],
        enis=[
            convert.eni(item)
            for item in _items(
                ec2, "describe_network_interfaces", "NetworkInterfaces", stats
            )
        ],
        instances=[
            instance
            for reservation in _items(ec2, "describe_instances", "Reservations", stats)
            for instance in convert.instances(_listing(reservation, "Instances"))
        ],
    )
