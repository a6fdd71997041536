"""Event and command contracts carried on NATS, as pydantic v2 models.

Every contract has a `schema_version`. Contracts only ever gain fields, so a
reader ignores fields it does not know and new fields always have defaults.
`docs/events.md` says who publishes and who consumes each one.
"""

from __future__ import annotations

import functools
import typing
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

SCHEMA_VERSION = 1

AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
RegionName = Annotated[
    str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", max_length=32)
]
Tags = dict[str, str]


def in_utc(value: datetime) -> datetime:
    """`value` (with a zone) in UTC; ValueError when no UTC datetime can hold it.

    9999-12-31T23:59:59-23:00 is a valid time that falls in year 10000.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("in UTC it falls outside years 1 to 9999") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(in_utc)]
"""A time with a zone, held in UTC: one PostgreSQL can store and compare."""


class Contract(BaseModel):
    """Base of everything on the bus: versioned, immutable, tolerant of new fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = SCHEMA_VERSION


class Resource(BaseModel):
    """Base of the resources in a snapshot."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Listing(Resource):
    """A part of a snapshot whose lists replace what the inventory holds.

    Read from JSON, every list must be there, empty or not: the poller always
    writes them, and one taken as empty because it is missing (a document
    that is not a snapshot, or a part of one) would delete what it lists.
    Built in Python, a list left out is empty.
    """

    @model_validator(mode="before")
    @classmethod
    def _lists_present_when_read(cls, data: Any, info: ValidationInfo) -> Any:
        if info.mode == "json" and isinstance(data, dict):
            missing = [name for name in _list_fields(cls) if name not in data]
            if missing:
                raise ValueError(
                    f"not a complete {cls.__name__}: no {', '.join(missing)}"
                )
        return data


@functools.cache
def _list_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name
        for name, field in model.model_fields.items()
        if typing.get_origin(field.annotation) is list
    )


# --- Resources, as one poll saw them in one region ----------------------------


class Vpc(Resource):
    vpc_id: str
    owner_id: AccountId
    state: str | None = None
    cidr_block: IPv4Network | None = None
    cidr_blocks: list[IPv4Network] = Field(default_factory=list)
    ipv6_cidr_blocks: list[IPv6Network] = Field(default_factory=list)
    is_default: bool = False
    dhcp_options_id: str | None = None
    instance_tenancy: str | None = None
    tags: Tags = Field(default_factory=dict)


class Subnet(Resource):
    subnet_id: str
    vpc_id: str
    owner_id: AccountId
    availability_zone: str | None = None
    availability_zone_id: str | None = None
    cidr_block: IPv4Network | None = None
    ipv6_cidr_blocks: list[IPv6Network] = Field(default_factory=list)
    state: str | None = None
    available_ip_address_count: int | None = None
    map_public_ip_on_launch: bool = False
    default_for_az: bool = False
    subnet_arn: str | None = None
    tags: Tags = Field(default_factory=dict)


class SecurityGroupRule(Resource):
    """One rule; it references a CIDR, an IPv6 CIDR, a prefix list or a group."""

    rule_id: str
    group_id: str
    group_owner_id: AccountId | None = None
    is_egress: bool
    ip_protocol: str
    from_port: int | None = None
    to_port: int | None = None
    cidr_ipv4: IPv4Network | None = None
    cidr_ipv6: IPv6Network | None = None
    prefix_list_id: str | None = None
    referenced_group_id: str | None = None
    referenced_group_owner_id: str | None = Field(
        default=None,
        max_length=12,
        description="An account id, or an AWS service such as `amazon-elb`.",
    )
    referenced_vpc_id: str | None = None
    referenced_vpc_peering_connection_id: str | None = None
    description: str | None = None
    tags: Tags = Field(default_factory=dict)


class SecurityGroup(Listing):
    group_id: str
    group_name: str
    owner_id: AccountId
    vpc_id: str | None = None
    description: str | None = None
    tags: Tags = Field(default_factory=dict)
    rules: list[SecurityGroupRule] = Field(default_factory=list)


class PrivateAddress(Resource):
    """A private IPv4 address of an ENI and the public address associated with it."""

    address: IPv4Address
    is_primary: bool = False
    private_dns_name: str | None = None
    public_ip: IPv4Address | None = None
    public_dns_name: str | None = None
    public_ip_owner_id: str | None = None
    allocation_id: str | None = None
    association_id: str | None = None
    carrier_ip: IPv4Address | None = None


class EniAttachment(Resource):
    attachment_id: str | None = None
    instance_id: str | None = None
    instance_owner_id: str | None = None
    device_index: int | None = None
    network_card_index: int | None = None
    status: str | None = None
    attach_time: UtcDatetime | None = None
    delete_on_termination: bool | None = None


class Eni(Listing):
    """An ENI; one with no IPv4 address at all (IPv6-only subnet) is normal."""

    eni_id: str
    owner_id: AccountId
    vpc_id: str | None = None
    subnet_id: str | None = None
    availability_zone: str | None = None
    interface_type: str | None = None
    status: str | None = None
    description: str | None = None
    mac_address: str | None = None
    private_dns_name: str | None = None
    requester_id: str | None = None
    requester_managed: bool = False
    source_dest_check: bool | None = None
    attachment: EniAttachment | None = None
    private_addresses: list[PrivateAddress] = Field(default_factory=list)
    ipv6_addresses: list[IPv6Address] = Field(default_factory=list)
    ipv4_prefixes: list[IPv4Network] = Field(default_factory=list)
    ipv6_prefixes: list[IPv6Network] = Field(default_factory=list)
    group_ids: list[str] = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)


class Instance(Listing):
    """An EC2 instance in any state but `terminated`."""

    instance_id: str
    owner_id: AccountId
    instance_type: str | None = None
    state: str | None = None
    vpc_id: str | None = None
    subnet_id: str | None = None
    availability_zone: str | None = None
    private_ip: IPv4Address | None = None
    public_ip: IPv4Address | None = None
    private_dns_name: str | None = None
    public_dns_name: str | None = None
    image_id: str | None = None
    launch_time: UtcDatetime | None = None
    platform: str | None = None
    architecture: str | None = None
    key_name: str | None = None
    iam_instance_profile_arn: str | None = None
    eni_ids: list[str] = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)


class RegionSnapshot(Listing):
    """Everything one poll saw in one region of one account; always complete.

    Read from JSON, an object that lacks a list (`{}`, or some other document
    stored by mistake) is no snapshot: taken for one it would empty the region.
    """

    vpcs: list[Vpc] = Field(default_factory=list)
    subnets: list[Subnet] = Field(default_factory=list)
    security_groups: list[SecurityGroup] = Field(default_factory=list)
    enis: list[Eni] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)


# --- Events --------------------------------------------------------------------


class AccountPoll(Contract):
    """`account.poll`: poll one account's regions now (published by the scheduler)."""

    task_id: uuid.UUID
    parent_task_id: uuid.UUID | None = None
    cycle_id: str | None = None
    account_id: AccountId
    role_name: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    regions: list[RegionName] = Field(min_length=1)
    requested_by: str | None = None
    requested_at: UtcDatetime

    @model_validator(mode="after")
    def _role_given(self) -> Self:
        if not self.role_arn and not self.role_name:
            raise ValueError("a poll needs role_name or role_arn")
        return self


class SnapshotRef(Contract):
    """Where a snapshot too large for one message waits in the object store."""

    bucket: str
    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ResourcesDiscovered(Contract):
    """`resources.discovered`: one complete region snapshot, inline or by reference."""

    task_id: uuid.UUID
    account_id: AccountId
    region: RegionName
    discovery_started_at: UtcDatetime
    discovery_finished_at: UtcDatetime
    snapshot: RegionSnapshot | None = None
    snapshot_ref: SnapshotRef | None = None

    @model_validator(mode="after")
    def _exactly_one_body(self) -> Self:
        if (self.snapshot is None) == (self.snapshot_ref is None):
            raise ValueError("exactly one of snapshot and snapshot_ref must be set")
        return self


class FailureKind(StrEnum):
    ACCESS_DENIED = "access_denied"
    ASSUME_ROLE_FAILED = "assume_role_failed"
    IDENTITY_MISMATCH = "identity_mismatch"
    REGION_NOT_ENABLED = "region_not_enabled"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    INVALID_REQUEST = "invalid_request"
    OTHER = "other"


class DiscoveryFailed(Contract):
    """`discovery.failed`: a region (or, with no region, the whole poll) failed."""

    task_id: uuid.UUID
    account_id: AccountId
    region: RegionName | None = None
    regions: list[RegionName] = Field(default_factory=list)
    kind: FailureKind
    reason: str = Field(max_length=4000)
    discovery_started_at: UtcDatetime
    failed_at: UtcDatetime


class TaskKind(StrEnum):
    CYCLE = "cycle"
    ACCOUNT_POLL = "account_poll"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


FINISHED_STATUSES = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.PARTIALLY_FAILED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.SUPERSEDED,
    }
)


class TaskCreated(Contract):
    """`tasks.created`: a parent (cycle) or child (account poll) task exists.

    A skipped child is created already `skipped`, with its reason.
    """

    task_id: uuid.UUID
    parent_task_id: uuid.UUID | None = None
    kind: TaskKind
    cycle_id: str | None = None
    account_id: AccountId | None = None
    regions: list[RegionName] = Field(default_factory=list)
    status: Literal[TaskStatus.PENDING, TaskStatus.SKIPPED] = TaskStatus.PENDING
    reason: str | None = None
    initiated_by: str | None = None
    children_total: int = Field(default=0, ge=0)
    not_before: UtcDatetime | None = None
    created_at: UtcDatetime


class TasksCreated(Contract):
    """`tasks.created_batch`: children of one cycle, announced in one message.

    Recorded exactly as each of `tasks` would be as a `TaskCreated` of its
    own. `first` is the position of `tasks[0]` among the cycle's children.
    """

    cycle_id: str
    parent_task_id: uuid.UUID
    first: int = Field(ge=0)
    tasks: list[TaskCreated] = Field(min_length=1)

    @model_validator(mode="after")
    def _children_of_the_parent(self) -> Self:
        for task in self.tasks:
            if task.kind is not TaskKind.ACCOUNT_POLL:
                raise ValueError(f"task {task.task_id} is not an account poll")
            if task.parent_task_id != self.parent_task_id:
                raise ValueError(f"task {task.task_id} is not a child of the parent")
        if len({task.task_id for task in self.tasks}) < len(self.tasks):
            raise ValueError("a task appears twice")
        return self


class TaskStarted(Contract):
    """`tasks.started`: a poller began an account poll."""

    task_id: uuid.UUID
    account_id: AccountId
    started_at: UtcDatetime
    attempt: int = Field(default=1, ge=1)


class TaskFinished(Contract):
    """`tasks.finished`: a task reached a final status (published by the reconciler)."""

    task_id: uuid.UUID
    parent_task_id: uuid.UUID | None = None
    account_id: AccountId | None = None
    status: TaskStatus
    finished_at: UtcDatetime
    error: str | None = None


class CycleProgress(Contract):
    """Where the cycle in progress stands."""

    cycle_id: str
    parent_task_id: uuid.UUID
    started_at: UtcDatetime
    accounts_total: int = Field(ge=0)
    published: int = Field(ge=0)
    skipped: int = Field(ge=0)
    waiting: int = Field(ge=0)
    next_due_at: UtcDatetime | None = None


class ScheduleState(Contract):
    """The schedule as operators see it; key `schedule` of the scheduler bucket."""

    enabled: bool
    cron: str
    stagger_seconds: float
    max_concurrent: int
    next_run_at: UtcDatetime | None = None
    current_cycle: CycleProgress | None = None
    last_cycle: CycleProgress | None = None
    updated_at: UtcDatetime


# --- Commands, answered on NATS request-reply ------------------------------------


class AuthMethod(StrEnum):
    """How the poller reaches an account.

    `instance_role`: the poller's own credentials assume the account's role.
    `manual`: registered but never polled; its resources are kept or removed
    by the polls of the accounts that see them.
    """

    INSTANCE_ROLE = "instance_role"
    MANUAL = "manual"


DEFAULT_ROLE_NAME = "PaloInventoryInspectionRole"
RoleName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_+=,.@-]+$", max_length=64)
]
RoleArn = Annotated[
    str,
    StringConstraints(
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$",
        max_length=2048,
    ),
]
ExternalId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z0-9_+=,.@:/-]+$", min_length=2, max_length=1224
    ),
]


DisplayName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")
]
"""A name people read. No NUL, which PostgreSQL refuses in text; the API
refuses every control character in new names, but names stored before that
rule must still travel."""


class AccountSpec(Contract):
    """An account as operators manage it."""

    account_id: AccountId
    account_name: DisplayName
    auth_method: AuthMethod = AuthMethod.INSTANCE_ROLE
    is_active: bool = True
    default_role_name: RoleName | None = DEFAULT_ROLE_NAME
    role_arn: RoleArn | None = None
    external_id: ExternalId | None = None
    default_regions: list[RegionName] = Field(default_factory=list)


class AccountChanges(Contract):
    """The fields of an account to change; unset fields stay as they are."""

    account_name: DisplayName | None = None
    auth_method: AuthMethod | None = None
    is_active: bool | None = None
    default_role_name: RoleName | None = None
    role_arn: RoleArn | None = None
    external_id: ExternalId | None = None
    default_regions: list[RegionName] | None = None


class CreateAccount(Contract):
    """`accounts.create`"""

    account: AccountSpec
    requested_by: str | None = None


class UpdateAccount(Contract):
    """`accounts.update`: fields explicitly set to null are cleared."""

    account_id: AccountId
    changes: AccountChanges
    requested_by: str | None = None


class DeleteAccount(Contract):
    """`accounts.delete`: removes the account and what it owns, under the rules."""

    account_id: AccountId
    requested_by: str | None = None


class RemoveAccountRegion(Contract):
    """`accounts.remove_region`"""

    account_id: AccountId
    region: RegionName
    requested_by: str | None = None


class ApiTokenRole(StrEnum):
    READER = "reader"
    ADMIN = "admin"


class CreateApiToken(Contract):
    """`tokens.create`: store a token; only its SHA-256 travels, never the token."""

    token_id: uuid.UUID
    name: str = Field(min_length=1, max_length=255)
    role: ApiTokenRole
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    requested_by: str | None = None


class RevokeApiToken(Contract):
    """`tokens.revoke`"""

    token_id: uuid.UUID
    requested_by: str | None = None


class StartCycle(Contract):
    """`scheduler.start_cycle`: run a polling cycle now."""

    requested_by: str


class PollAccountNow(Contract):
    """`scheduler.poll_account`: poll one account now."""

    account_id: AccountId
    requested_by: str


class ErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


class CommandReply(Contract):
    """The answer to every command, sent once its effect is committed."""

    ok: bool
    error_code: ErrorCode | None = None
    error: str | None = None
    account: AccountSpec | None = None
    task_id: uuid.UUID | None = None
    removed: dict[str, int] = Field(default_factory=dict)
