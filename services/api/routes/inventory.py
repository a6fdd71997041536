"""Inventory lists and details: VPCs, subnets, security groups, ENIs, instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.api import inventory as inv
from services.api.deps import Reader, SessionDep
from services.api.errors import NOT_FOUND, READ_ERRORS, Responses, not_found
from services.api.ids import (
    ENI_ID,
    GROUP_ID,
    INSTANCE_ID,
    SUBNET_ID,
    VPC_ID,
    AccountQuery,
    RegionQuery,
    SubnetQuery,
    VpcQuery,
)
from services.api.pagination import CursorParam, Limit, Page
from services.api.schemas import (
    EniOut,
    InstanceOut,
    IpLookup,
    SecurityGroupOut,
    SubnetOut,
    VpcOut,
)
from shared.db.models import Ec2Instance, Eni, SecurityGroup, Subnet, Vpc

router = APIRouter(tags=["inventory"])
DETAIL: Responses = {**READ_ERRORS, **NOT_FOUND}

TagQuery = Annotated[
    list[str] | None,
    Query(
        description="`Key=Value`, or `Key` for any value; repeat to require several.",
        max_length=20,
    ),
]
Word = Annotated[str | None, Query(max_length=64, pattern=r"^[\w.:-]+$")]


@router.get("/vpcs", responses=READ_ERRORS)
async def list_vpcs(
    _: Reader,
    session: SessionDep,
    owner_account_id: AccountQuery = None,
    region: RegionQuery = None,
    state: Word = None,
    is_default: bool | None = None,
    tag: TagQuery = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[VpcOut]:
    """VPCs by id."""
    filters = inv.Filters()
    filters.equal(Vpc.owner_account_id, owner_account_id)
    filters.equal(Vpc.region, region)
    filters.equal(Vpc.state, state)
    filters.equal(Vpc.is_default, is_default)
    filters.tags(Vpc.tags, tag)
    items, next_cursor = await inv.page(session, inv.VPCS, filters, limit, cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/vpcs/{vpc_id}", responses=DETAIL)
async def get_vpc(
    vpc_id: Annotated[str, Path(pattern=VPC_ID)], _: Reader, session: SessionDep
) -> VpcOut:
    found = await inv.detail(session, inv.VPCS, vpc_id)
    if found is None:
        raise not_found(f"VPC {vpc_id}")
    return found


@router.get("/subnets", responses=READ_ERRORS)
async def list_subnets(
    _: Reader,
    session: SessionDep,
    owner_account_id: AccountQuery = None,
    region: RegionQuery = None,
    vpc_id: VpcQuery = None,
    availability_zone: Word = None,
    state: Word = None,
    tag: TagQuery = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[SubnetOut]:
    """Subnets by id."""
    filters = inv.Filters()
    filters.equal(Subnet.owner_account_id, owner_account_id)
    filters.equal(Subnet.region, region)
    filters.equal(Subnet.vpc_id, vpc_id)
    filters.equal(Subnet.availability_zone, availability_zone)
    filters.equal(Subnet.state, state)
    filters.tags(Subnet.tags, tag)
    items, next_cursor = await inv.page(session, inv.SUBNETS, filters, limit, cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/subnets/{subnet_id}", responses=DETAIL)
async def get_subnet(
    subnet_id: Annotated[str, Path(pattern=SUBNET_ID)], _: Reader, session: SessionDep
) -> SubnetOut:
    found = await inv.detail(session, inv.SUBNETS, subnet_id)
    if found is None:
        raise not_found(f"subnet {subnet_id}")
    return found


@router.get("/security-groups", responses=READ_ERRORS)
async def list_security_groups(
    _: Reader,
    session: SessionDep,
    owner_account_id: AccountQuery = None,
    region: RegionQuery = None,
    vpc_id: VpcQuery = None,
    group_name: Annotated[str | None, Query(max_length=255)] = None,
    tag: TagQuery = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[SecurityGroupOut]:
    """Security groups with their rules, by id."""
    filters = inv.Filters()
    filters.equal(SecurityGroup.owner_account_id, owner_account_id)
    filters.equal(SecurityGroup.region, region)
    filters.equal(SecurityGroup.vpc_id, vpc_id)
    filters.equal(SecurityGroup.group_name, group_name)
    filters.tags(SecurityGroup.tags, tag)
    items, next_cursor = await inv.page(
        session, inv.SECURITY_GROUPS, filters, limit, cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/security-groups/{group_id}", responses=DETAIL)
async def get_security_group(
    group_id: Annotated[str, Path(pattern=GROUP_ID)], _: Reader, session: SessionDep
) -> SecurityGroupOut:
    found = await inv.detail(session, inv.SECURITY_GROUPS, group_id)
    if found is None:
        raise not_found(f"security group {group_id}")
    return found


@router.get("/enis", responses=READ_ERRORS)
async def list_enis(
    _: Reader,
    session: SessionDep,
    owner_account_id: AccountQuery = None,
    region: RegionQuery = None,
    vpc_id: VpcQuery = None,
    subnet_id: SubnetQuery = None,
    status: Word = None,
    interface_type: Word = None,
    instance_id: Annotated[str | None, Query(pattern=INSTANCE_ID)] = None,
    group_id: Annotated[str | None, Query(pattern=GROUP_ID)] = None,
    has_public_ip: bool | None = None,
    cidr: Annotated[
        str | None,
        Query(max_length=64, description="ENIs with an address inside this CIDR."),
    ] = None,
    tag: TagQuery = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[EniOut]:
    """ENIs with their addresses and security groups, by id."""
    filters = inv.Filters()
    filters.equal(Eni.owner_account_id, owner_account_id)
    filters.equal(Eni.region, region)
    filters.equal(Eni.vpc_id, vpc_id)
    filters.equal(Eni.subnet_id, subnet_id)
    filters.equal(Eni.status, status)
    filters.equal(Eni.interface_type, interface_type)
    filters.equal(Eni.attachment_instance_id, instance_id)
    filters.tags(Eni.tags, tag)
    if group_id is not None:
        filters.conditions.append(inv.in_group(group_id))
    if has_public_ip is not None:
        filters.conditions.append(inv.has_public_ip(has_public_ip))
    if cidr is not None:
        filters.conditions.append(inv.in_cidr(inv.parse_cidr(cidr)))
    items, next_cursor = await inv.page(session, inv.ENIS, filters, limit, cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/enis/{eni_id}", responses=DETAIL)
async def get_eni(
    eni_id: Annotated[str, Path(pattern=ENI_ID)], _: Reader, session: SessionDep
) -> EniOut:
    found = await inv.detail(session, inv.ENIS, eni_id)
    if found is None:
        raise not_found(f"ENI {eni_id}")
    return found


@router.get("/instances", responses=READ_ERRORS)
async def list_instances(
    _: Reader,
    session: SessionDep,
    owner_account_id: AccountQuery = None,
    region: RegionQuery = None,
    vpc_id: VpcQuery = None,
    subnet_id: SubnetQuery = None,
    state: Word = None,
    instance_type: Word = None,
    tag: TagQuery = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> Page[InstanceOut]:
    """EC2 instances by id."""
    filters = inv.Filters()
    filters.equal(Ec2Instance.owner_account_id, owner_account_id)
    filters.equal(Ec2Instance.region, region)
    filters.equal(Ec2Instance.vpc_id, vpc_id)
    filters.equal(Ec2Instance.subnet_id, subnet_id)
    filters.equal(Ec2Instance.state, state)
    filters.equal(Ec2Instance.instance_type, instance_type)
    filters.tags(Ec2Instance.tags, tag)
    items, next_cursor = await inv.page(session, inv.INSTANCES, filters, limit, cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/instances/{instance_id}", responses=DETAIL)
async def get_instance(
    instance_id: Annotated[str, Path(pattern=INSTANCE_ID)],
    _: Reader,
    session: SessionDep,
) -> InstanceOut:
    found = await inv.detail(session, inv.INSTANCES, instance_id)
    if found is None:
        raise not_found(f"instance {instance_id}")
    return found


@router.get("/ip/{address:path}", responses=DETAIL)
async def lookup_ip(
    address: Annotated[
        str, Path(max_length=64, description="An IPv4 or IPv6 address.")
    ],
    _: Reader,
    session: SessionDep,
) -> IpLookup:
    """Who holds this address: primary or secondary, private, public or IPv6, or
    inside a prefix delegated to an ENI. Most specific match first."""
    found = await inv.lookup_ip(session, inv.parse_ip(address))
    if not found.matches:
        raise not_found(f"address {address}")
    return found
