"""What the API answers and accepts (one model per role, as in the OpenAPI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.api.ids import Regions
from shared.events import (
    DEFAULT_ROLE_NAME,
    AccountId,
    ApiTokenRole,
    AuthMethod,
    ExternalId,
    RoleArn,
    RoleName,
    ScheduleState,
)

Text = str
"""An address, network or MAC, as PostgreSQL writes it."""


_UNSEEN = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff"
"""Control characters, separators and invisible format characters."""

AccountName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=f"^[^{_UNSEEN}]+$")
]
"""A name people read, as the API accepts it: no control characters, line or
paragraph separators, or invisible format characters (zero-width, bidi)."""


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- Accounts ----------------------------------------------------------------------


class AccountFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_name: AccountName
    auth_method: AuthMethod = AuthMethod.INSTANCE_ROLE
    is_active: StrictBool = True
    default_role_name: RoleName | None = Field(
        default=DEFAULT_ROLE_NAME,
        description="Role assumed in the account, unless `role_arn` is set.",
    )
    role_arn: RoleArn | None = Field(
        default=None, description="Full role ARN; wins over `default_role_name`."
    )
    external_id: ExternalId | None = Field(
        default=None, description="External id passed to AssumeRole (not a secret)."
    )
    default_regions: Regions = Field(
        default_factory=list, max_length=64, description="Regions to poll."
    )


class AccountCreate(AccountFields):
    """A new account."""

    account_id: AccountId = Field(description="The 12-digit AWS account id.")

    @model_validator(mode="after")
    def _reachable(self) -> AccountCreate:
        if (
            self.auth_method is AuthMethod.INSTANCE_ROLE
            and not self.role_arn
            and not self.default_role_name
        ):
            raise ValueError("instance_role needs default_role_name or role_arn")
        return self


class AccountUpdate(BaseModel):
    """Fields to change; those left out stay, those sent as null are cleared."""

    model_config = ConfigDict(extra="forbid")

    account_name: AccountName | None = None
    auth_method: AuthMethod | None = None
    is_active: StrictBool | None = None
    default_role_name: RoleName | None = None
    role_arn: RoleArn | None = None
    external_id: ExternalId | None = None
    default_regions: Regions | None = Field(default=None, max_length=64)

    @field_validator("account_name", "auth_method", "is_active", "default_regions")
    @classmethod
    def _not_cleared(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("can be changed but not cleared (null)")
        return value


class AccountOut(Out):
    """An account, and how its polls have gone."""

    account_id: str
    account_name: str
    auth_method: str
    is_active: bool
    default_role_name: str | None
    role_arn: str | None
    external_id: str | None
    default_regions: list[str]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    stale_since: datetime | None = None


class AccountDeleted(BaseModel):
    """What deleting an account removed, by resource type."""

    account_id: str
    removed: dict[str, int] = Field(
        description='Rows removed per type, e.g. `{"enis": 12, "vpcs": 1}`.'
    )


class RegionRemoved(BaseModel):
    """What removing a region from an account removed, by resource type."""

    account_id: str
    region: str
    removed: dict[str, int]


# --- Work, tasks and the schedule ---------------------------------------------------


class Accepted(BaseModel):
    """Work accepted; follow it at `/api/v1/tasks/{task_id}`."""

    task_id: uuid.UUID


class RegionResult(BaseModel):
    """What one region of an account poll gave."""

    model_config = ConfigDict(extra="allow")

    status: str | None = None
    added: dict[str, int] = Field(default_factory=dict)
    updated: dict[str, int] = Field(default_factory=dict)
    removed: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    kind: str | None = Field(default=None, description="Failure kind, on error.")


class ChildCounts(BaseModel):
    """How a cycle's account polls ended so far."""

    total: int
    finished: int
    succeeded: int
    partially_failed: int
    failed: int
    skipped: int


class TaskOut(BaseModel):
    """A cycle (parent) or one account poll (child)."""

    task_id: uuid.UUID
    parent_task_id: uuid.UUID | None
    kind: str = Field(description="`cycle` or `account_poll`.")
    cycle_id: str | None
    account_id: str | None
    regions: list[str]
    status: str
    initiated_by: str | None = Field(
        description="Who asked for it; null when the schedule started it."
    )
    reason: str | None
    error: str | None
    region_results: dict[str, RegionResult]
    children: ChildCounts
    progress: float = Field(
        ge=0, le=1, description="Share done: children for a cycle, regions for a poll."
    )
    attempts: int
    not_before: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    duration_seconds: float | None = Field(
        description="From start to finish, or to now while it runs."
    )


class TaskDetail(TaskOut):
    """A task with its children (for a cycle: one per account)."""

    child_tasks: list[TaskOut] = Field(
        description="The children, oldest first: at most the first 5,000."
    )
    child_tasks_complete: bool = Field(
        description="False when there are more children than `child_tasks` holds;"
        " page through all of them with `GET /tasks?parent=<task_id>`."
    )


class PollQueue(BaseModel):
    """Account polls waiting for and held by pollers."""

    known: bool = Field(description="False when the poller consumer does not exist.")
    pending: int | None = Field(description="Waiting to be picked up.")
    running: int | None = Field(description="Picked up and not yet acknowledged.")


class ScheduleOut(BaseModel):
    """The schedule as the scheduler last wrote it, and the poll queue."""

    available: bool = Field(description="False when the scheduler has written none.")
    state: ScheduleState | None = Field(
        description="Next run, the cycle in progress and the last one."
    )
    poll_queue: PollQueue


# --- Tokens -------------------------------------------------------------------------


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, pattern=r"^[\w .@:-]+$")
    role: ApiTokenRole


class TokenOut(Out):
    """A token's record; the token itself is never shown again."""

    token_id: uuid.UUID
    name: str
    role: str
    created_by: str | None
    created_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(BaseModel):
    """A new token. `token` is shown this once and stored only as its SHA-256."""

    token_id: uuid.UUID
    name: str
    role: ApiTokenRole
    token: str


# --- Inventory ----------------------------------------------------------------------


class ResourceOut(Out):
    region: str
    owner_account_id: str = Field(description="The account AWS says owns it.")
    reported_by: str = Field(description="The account whose poll last changed it.")
    seen_by: list[str] = Field(
        description="Accounts whose latest snapshot of the region contains it."
    )
    tags: dict[str, str]
    first_seen_at: datetime
    updated_at: datetime = Field(description="Last change of its content.")
    last_seen_at: datetime | None = Field(
        description="Latest applied snapshot among the accounts that see it."
    )


class VpcOut(ResourceOut):
    vpc_id: str
    state: str | None
    cidr_block: Text | None
    cidr_blocks: list[Text]
    ipv6_cidr_blocks: list[Text]
    is_default: bool
    dhcp_options_id: str | None
    instance_tenancy: str | None


class SubnetOut(ResourceOut):
    subnet_id: str
    vpc_id: str
    availability_zone: str | None
    availability_zone_id: str | None
    cidr_block: Text | None
    ipv6_cidr_blocks: list[Text]
    state: str | None
    available_ip_address_count: int | None
    map_public_ip_on_launch: bool
    default_for_az: bool
    subnet_arn: str | None


class RuleOut(Out):
    rule_id: str
    is_egress: bool
    ip_protocol: str
    from_port: int | None
    to_port: int | None
    cidr_ipv4: Text | None
    cidr_ipv6: Text | None
    prefix_list_id: str | None
    referenced_group_id: str | None
    referenced_group_owner_id: str | None
    referenced_vpc_id: str | None
    referenced_vpc_peering_connection_id: str | None
    description: str | None


class SecurityGroupOut(ResourceOut):
    group_id: str
    group_name: str
    vpc_id: str | None
    description: str | None
    rules: list[RuleOut]


class AddressOut(Out):
    address: Text = Field(description="A host address, or a prefix delegated to it.")
    kind: str = Field(
        description="private_ipv4, public_ipv4, ipv6, ipv4_prefix or ipv6_prefix."
    )
    is_primary: bool
    private_address: Text | None = Field(
        description="For a public address: the private one it maps to."
    )
    private_dns_name: str | None
    public_dns_name: str | None
    public_ip_owner_id: str | None
    allocation_id: str | None
    association_id: str | None


class GroupRef(BaseModel):
    group_id: str
    group_name: str | None = Field(description="Null when the group is not known.")
    owner_account_id: str | None


class AttachmentOut(BaseModel):
    attachment_id: str | None
    instance_id: str | None
    instance_owner_id: str | None
    device_index: int | None
    network_card_index: int | None
    status: str | None
    attach_time: datetime | None
    delete_on_termination: bool | None


class EniOut(ResourceOut):
    eni_id: str
    vpc_id: str | None
    subnet_id: str | None
    availability_zone: str | None
    interface_type: str | None
    status: str | None
    description: str | None
    mac_address: Text | None
    private_ip: Text | None
    private_dns_name: str | None
    requester_id: str | None
    requester_managed: bool
    source_dest_check: bool | None
    attachment: AttachmentOut | None
    addresses: list[AddressOut]
    security_groups: list[GroupRef]


class InstanceOut(ResourceOut):
    instance_id: str
    instance_type: str | None
    state: str | None
    vpc_id: str | None
    subnet_id: str | None
    availability_zone: str | None
    private_ip: Text | None
    public_ip: Text | None
    private_dns_name: str | None
    public_dns_name: str | None
    image_id: str | None
    launch_time: datetime | None
    platform: str | None
    architecture: str | None
    key_name: str | None
    iam_instance_profile_arn: str | None
    eni_ids: list[str]


class OwnerOut(BaseModel):
    account_id: str
    account_name: str | None = Field(
        description="Null when the owner is not an account of the inventory."
    )


class IpMatch(BaseModel):
    """One ENI holding the address, with everything around it."""

    matched_address: Text = Field(description="The address or prefix that matched.")
    matched_kind: str
    eni: EniOut
    instance: InstanceOut | None
    subnet: SubnetOut | None
    vpc: VpcOut | None
    security_groups: list[SecurityGroupOut]
    owner: OwnerOut


class IpLookup(BaseModel):
    """Who holds an address. Private ranges overlap across VPCs, so several may."""

    address: str
    matches: list[IpMatch]
