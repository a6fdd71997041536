"""The shapes of the ids and names the API accepts, checked before any query."""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated

import boto3
from fastapi import Path, Query
from pydantic import AfterValidator

ACCOUNT_ID = r"^[0-9]{12}$"
VPC_ID = r"^vpc-[0-9a-f]{8,32}$"
SUBNET_ID = r"^subnet-[0-9a-f]{8,32}$"
GROUP_ID = r"^sg-[0-9a-f]{8,32}$"
ENI_ID = r"^eni-[0-9a-f]{8,32}$"
INSTANCE_ID = r"^i-[0-9a-f]{8,32}$"
REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"

AccountPath = Annotated[
    str, Path(pattern=ACCOUNT_ID, description="The 12-digit AWS account id.")
]
AccountQuery = Annotated[
    str | None, Query(pattern=ACCOUNT_ID, description="A 12-digit AWS account id.")
]
RegionQuery = Annotated[
    str | None, Query(pattern=REGION, max_length=32, description="e.g. `eu-west-1`.")
]
VpcQuery = Annotated[str | None, Query(pattern=VPC_ID, description="A VPC id.")]
SubnetQuery = Annotated[
    str | None, Query(pattern=SUBNET_ID, description="A subnet id.")
]


@cache
def known_regions() -> frozenset[str]:
    """Every region botocore knows for EC2, in every partition (read offline)."""
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    # Only names the bus contracts accept (`shared.events.RegionName`).
    return frozenset(name for name in regions if re.match(REGION, name))


def _known_region(value: str) -> str:
    if value not in known_regions():
        raise ValueError(f"unknown AWS region {value!r}")
    return value


KnownRegion = Annotated[str, AfterValidator(_known_region)]


def _no_duplicates(regions: list[str]) -> list[str]:
    repeated = sorted({region for region in regions if regions.count(region) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return regions


Regions = Annotated[list[KnownRegion], AfterValidator(_no_duplicates)]
