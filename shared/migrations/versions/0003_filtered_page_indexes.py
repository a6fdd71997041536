"""Indexes for filtered keyset pages: each filter index ends with the table's key.

A list filtered by owner and region, VPC or subnet is read in AWS-id order, so
with the key at the end of the index a page is the next `limit` entries of
one index range instead of a walk of the primary key that filters as it goes.
The indexes keep their names: they still serve every lookup by those columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# index name: (table, columns it filters by, the table's key)
INDEXES: dict[str, tuple[str, list[str], str]] = {
    "ix_vpcs_owner_region": ("vpcs", ["owner_account_id", "region"], "vpc_id"),
    "ix_subnets_vpc_id": ("subnets", ["vpc_id"], "subnet_id"),
    "ix_subnets_owner_region": (
        "subnets",
        ["owner_account_id", "region"],
        "subnet_id",
    ),
    "ix_security_groups_vpc_id": ("security_groups", ["vpc_id"], "group_id"),
    "ix_security_groups_owner_region": (
        "security_groups",
        ["owner_account_id", "region"],
        "group_id",
    ),
    "ix_enis_owner_region": ("enis", ["owner_account_id", "region"], "eni_id"),
    "ix_enis_vpc_id": ("enis", ["vpc_id"], "eni_id"),
    "ix_enis_subnet_id": ("enis", ["subnet_id"], "eni_id"),
    "ix_ec2_instances_owner_region": (
        "ec2_instances",
        ["owner_account_id", "region"],
        "instance_id",
    ),
    "ix_ec2_instances_vpc_id": ("ec2_instances", ["vpc_id"], "instance_id"),
    "ix_ec2_instances_subnet_id": ("ec2_instances", ["subnet_id"], "instance_id"),
}


def _recreate(with_key: bool) -> None:
    for name, (table, columns, key) in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [*columns, key] if with_key else columns)


def upgrade() -> None:
    _recreate(with_key=True)


def downgrade() -> None:
    _recreate(with_key=False)
