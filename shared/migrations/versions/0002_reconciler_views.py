"""Last-seen times for readers, and task rows recorded before their announcement.

- `discovery_tasks.announced`: false while a task row exists only because a
  later event (a result, a child) arrived before its `tasks.created`.
- `resource_last_seen(region, seen_by)`: when a resource was last seen, the
  latest applied snapshot among the accounts that currently see it.
- `<table>_with_last_seen` views: every resource table with `last_seen_at`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESOURCE_TABLES = ("vpcs", "subnets", "security_groups", "enis", "ec2_instances")


def upgrade() -> None:
    op.add_column(
        "discovery_tasks",
        sa.Column(
            "announced", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
    )
    op.execute(
        """
        CREATE FUNCTION resource_last_seen(region varchar, seen_by varchar[])
        RETURNS timestamptz
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$
            SELECT max(p.last_applied_at) FROM region_polls p
            WHERE p.region = $1 AND p.account_id = ANY($2)
        $$
        """
    )
    for table in RESOURCE_TABLES:
        op.execute(
            f"CREATE VIEW {table}_with_last_seen AS SELECT r.*,"
            f" resource_last_seen(r.region, r.seen_by) AS last_seen_at"
            f" FROM {table} r"
        )


def downgrade() -> None:
    for table in RESOURCE_TABLES:
        op.execute(f"DROP VIEW IF EXISTS {table}_with_last_seen")
    op.execute("DROP FUNCTION IF EXISTS resource_last_seen(varchar, varchar[])")
    op.drop_column("discovery_tasks", "announced")
