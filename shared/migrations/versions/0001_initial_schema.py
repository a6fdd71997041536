"""Initial schema: accounts, tasks, tokens and the network resources.

Revision ID: 0001
Revises:
Create Date: 2026-12-03 17:46:04.566794
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("account_name", sa.String(length=255), nullable=False),
        sa.Column("auth_method", sa.String(length=32), nullable=False),
        sa.Column(
            "is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
        sa.Column("default_role_name", sa.String(length=64), nullable=True),
        sa.Column("role_arn", sa.String(length=2048), nullable=True),
        sa.Column("external_id", sa.String(length=1224), nullable=True),
        sa.Column(
            "default_regions",
            postgresql.ARRAY(sa.String(length=32)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default="0", nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stale_since", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "account_id ~ '^[0-9]{12}$'", name=op.f("ck_accounts_account_id_digits")
        ),
        sa.CheckConstraint(
            "auth_method IN ('instance_role', 'manual')",
            name=op.f("ck_accounts_known_auth_method"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('reader', 'admin')", name=op.f("ck_api_tokens_known_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.create_table(
        "discovery_tasks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("cycle_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=12), nullable=True),
        sa.Column(
            "regions",
            postgresql.ARRAY(sa.String(length=32)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "status", sa.String(length=32), server_default="pending", nullable=False
        ),
        sa.Column("initiated_by", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "region_results",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("children_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "children_succeeded", sa.Integer(), server_default="0", nullable=False
        ),
        sa.Column(
            "children_partially_failed",
            sa.Integer(),
            server_default="0",
            nullable=False,
        ),
        sa.Column("children_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("children_skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('cycle', 'account_poll')",
            name=op.f("ck_discovery_tasks_known_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'partially_failed', "
            "'failed', 'skipped', 'cancelled', 'superseded')",
            name=op.f("ck_discovery_tasks_known_status"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["discovery_tasks.id"],
            name=op.f("fk_discovery_tasks_parent_id_discovery_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discovery_tasks")),
    )
    op.create_index(
        "ix_discovery_tasks_created_at_id",
        "discovery_tasks",
        ["created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_discovery_tasks_parent_id", "discovery_tasks", ["parent_id"], unique=False
    )
    op.create_index(
        "ix_discovery_tasks_unfinished_account",
        "discovery_tasks",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.create_table(
        "ec2_instances",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("vpc_id", sa.String(length=64), nullable=True),
        sa.Column("subnet_id", sa.String(length=64), nullable=True),
        sa.Column("availability_zone", sa.String(length=64), nullable=True),
        sa.Column("private_ip", postgresql.INET(), nullable=True),
        sa.Column("public_ip", postgresql.INET(), nullable=True),
        sa.Column("private_dns_name", sa.String(length=255), nullable=True),
        sa.Column("public_dns_name", sa.String(length=255), nullable=True),
        sa.Column("image_id", sa.String(length=64), nullable=True),
        sa.Column("launch_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.Column("architecture", sa.String(length=32), nullable=True),
        sa.Column("key_name", sa.String(length=255), nullable=True),
        sa.Column("iam_instance_profile_arn", sa.String(length=2048), nullable=True),
        sa.Column(
            "eni_ids",
            postgresql.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=12), nullable=False),
        sa.Column("reported_by", sa.String(length=12), nullable=False),
        sa.Column("seen_by", postgresql.ARRAY(sa.String(length=12)), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_ec2_instances")),
    )
    op.create_index(
        "ix_ec2_instances_owner_region",
        "ec2_instances",
        ["owner_account_id", "region"],
        unique=False,
    )
    op.create_index(
        "ix_ec2_instances_subnet_id", "ec2_instances", ["subnet_id"], unique=False
    )
    op.create_index(
        "ix_ec2_instances_vpc_id", "ec2_instances", ["vpc_id"], unique=False
    )
    op.create_table(
        "enis",
        sa.Column("eni_id", sa.String(length=64), nullable=False),
        sa.Column("vpc_id", sa.String(length=64), nullable=True),
        sa.Column("subnet_id", sa.String(length=64), nullable=True),
        sa.Column("availability_zone", sa.String(length=64), nullable=True),
        sa.Column("interface_type", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("mac_address", postgresql.MACADDR(), nullable=True),
        sa.Column("private_ip", postgresql.INET(), nullable=True),
        sa.Column("private_dns_name", sa.String(length=255), nullable=True),
        sa.Column("requester_id", sa.String(length=255), nullable=True),
        sa.Column(
            "requester_managed",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column("source_dest_check", sa.Boolean(), nullable=True),
        sa.Column("attachment_id", sa.String(length=64), nullable=True),
        sa.Column("attachment_instance_id", sa.String(length=64), nullable=True),
        sa.Column("attachment_instance_owner_id", sa.String(length=64), nullable=True),
        sa.Column("attachment_device_index", sa.Integer(), nullable=True),
        sa.Column("attachment_network_card_index", sa.Integer(), nullable=True),
        sa.Column("attachment_status", sa.String(length=32), nullable=True),
        sa.Column("attachment_attach_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attachment_delete_on_termination", sa.Boolean(), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=12), nullable=False),
        sa.Column("reported_by", sa.String(length=12), nullable=False),
        sa.Column("seen_by", postgresql.ARRAY(sa.String(length=12)), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("eni_id", name=op.f("pk_enis")),
    )
    op.create_index(
        "ix_enis_attachment_instance_id",
        "enis",
        ["attachment_instance_id"],
        unique=False,
    )
    op.create_index(
        "ix_enis_owner_region", "enis", ["owner_account_id", "region"], unique=False
    )
    op.create_index("ix_enis_subnet_id", "enis", ["subnet_id"], unique=False)
    op.create_index("ix_enis_vpc_id", "enis", ["vpc_id"], unique=False)
    op.create_table(
        "region_polls",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column(
            "last_discovery_started_at", sa.DateTime(timezone=True), nullable=True
        ),
        sa.Column("last_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_task_id", sa.UUID(), nullable=True),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default="0", nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=32), nullable=True),
        sa.Column("stale_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "region", name=op.f("pk_region_polls")),
    )
    op.create_table(
        "security_groups",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.Column("vpc_id", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=12), nullable=False),
        sa.Column("reported_by", sa.String(length=12), nullable=False),
        sa.Column("seen_by", postgresql.ARRAY(sa.String(length=12)), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_security_groups")),
    )
    op.create_index(
        "ix_security_groups_owner_region",
        "security_groups",
        ["owner_account_id", "region"],
        unique=False,
    )
    op.create_index(
        "ix_security_groups_vpc_id", "security_groups", ["vpc_id"], unique=False
    )
    op.create_table(
        "subnets",
        sa.Column("subnet_id", sa.String(length=64), nullable=False),
        sa.Column("vpc_id", sa.String(length=64), nullable=False),
        sa.Column("availability_zone", sa.String(length=64), nullable=True),
        sa.Column("availability_zone_id", sa.String(length=64), nullable=True),
        sa.Column("cidr_block", postgresql.CIDR(), nullable=True),
        sa.Column(
            "ipv6_cidr_blocks",
            postgresql.ARRAY(postgresql.CIDR()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("available_ip_address_count", sa.Integer(), nullable=True),
        sa.Column(
            "map_public_ip_on_launch",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column(
            "default_for_az",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column("subnet_arn", sa.String(length=2048), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=12), nullable=False),
        sa.Column("reported_by", sa.String(length=12), nullable=False),
        sa.Column("seen_by", postgresql.ARRAY(sa.String(length=12)), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("subnet_id", name=op.f("pk_subnets")),
    )
    op.create_index(
        "ix_subnets_cidr_block",
        "subnets",
        ["cidr_block"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"cidr_block": "inet_ops"},
    )
    op.create_index(
        "ix_subnets_owner_region",
        "subnets",
        ["owner_account_id", "region"],
        unique=False,
    )
    op.create_index("ix_subnets_vpc_id", "subnets", ["vpc_id"], unique=False)
    op.create_table(
        "vpcs",
        sa.Column("vpc_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("cidr_block", postgresql.CIDR(), nullable=True),
        sa.Column(
            "cidr_blocks",
            postgresql.ARRAY(postgresql.CIDR()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "ipv6_cidr_blocks",
            postgresql.ARRAY(postgresql.CIDR()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("dhcp_options_id", sa.String(length=64), nullable=True),
        sa.Column("instance_tenancy", sa.String(length=32), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=12), nullable=False),
        sa.Column("reported_by", sa.String(length=12), nullable=False),
        sa.Column("seen_by", postgresql.ARRAY(sa.String(length=12)), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("vpc_id", name=op.f("pk_vpcs")),
    )
    op.create_index(
        "ix_vpcs_cidr_block",
        "vpcs",
        ["cidr_block"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"cidr_block": "inet_ops"},
    )
    op.create_index(
        "ix_vpcs_owner_region", "vpcs", ["owner_account_id", "region"], unique=False
    )
    op.create_table(
        "eni_addresses",
        sa.Column("eni_id", sa.String(length=64), nullable=False),
        sa.Column("address", postgresql.INET(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("private_address", postgresql.INET(), nullable=True),
        sa.Column("private_dns_name", sa.String(length=255), nullable=True),
        sa.Column("public_dns_name", sa.String(length=255), nullable=True),
        sa.Column("public_ip_owner_id", sa.String(length=64), nullable=True),
        sa.Column("allocation_id", sa.String(length=64), nullable=True),
        sa.Column("association_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "kind IN ('private_ipv4', 'public_ipv4', 'ipv6', 'ipv4_prefix', "
            "'ipv6_prefix')",
            name=op.f("ck_eni_addresses_known_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["eni_id"],
            ["enis.eni_id"],
            name=op.f("fk_eni_addresses_eni_id_enis"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("eni_id", "address", name=op.f("pk_eni_addresses")),
    )
    op.create_index(
        "ix_eni_addresses_address", "eni_addresses", ["address"], unique=False
    )
    op.create_index(
        "ix_eni_addresses_address_gist",
        "eni_addresses",
        ["address"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"address": "inet_ops"},
    )
    op.create_table(
        "eni_security_groups",
        sa.Column("eni_id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["eni_id"],
            ["enis.eni_id"],
            name=op.f("fk_eni_security_groups_eni_id_enis"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "eni_id", "group_id", name=op.f("pk_eni_security_groups")
        ),
    )
    op.create_index(
        "ix_eni_security_groups_group_id",
        "eni_security_groups",
        ["group_id"],
        unique=False,
    )
    op.create_table(
        "security_group_rules",
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("group_owner_id", sa.String(length=12), nullable=True),
        sa.Column("is_egress", sa.Boolean(), nullable=False),
        sa.Column("ip_protocol", sa.String(length=16), nullable=False),
        sa.Column("from_port", sa.Integer(), nullable=True),
        sa.Column("to_port", sa.Integer(), nullable=True),
        sa.Column("cidr_ipv4", postgresql.CIDR(), nullable=True),
        sa.Column("cidr_ipv6", postgresql.CIDR(), nullable=True),
        sa.Column("prefix_list_id", sa.String(length=64), nullable=True),
        sa.Column("referenced_group_id", sa.String(length=64), nullable=True),
        sa.Column("referenced_group_owner_id", sa.String(length=12), nullable=True),
        sa.Column("referenced_vpc_id", sa.String(length=64), nullable=True),
        sa.Column(
            "referenced_vpc_peering_connection_id", sa.String(length=64), nullable=True
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["security_groups.group_id"],
            name=op.f("fk_security_group_rules_group_id_security_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_security_group_rules")),
    )
    op.create_index(
        "ix_security_group_rules_group_id",
        "security_group_rules",
        ["group_id"],
        unique=False,
    )
    op.create_index(
        "ix_security_group_rules_referenced_group_id",
        "security_group_rules",
        ["referenced_group_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_security_group_rules_referenced_group_id", table_name="security_group_rules"
    )
    op.drop_index("ix_security_group_rules_group_id", table_name="security_group_rules")
    op.drop_table("security_group_rules")
    op.drop_index("ix_eni_security_groups_group_id", table_name="eni_security_groups")
    op.drop_table("eni_security_groups")
    op.drop_index(
        "ix_eni_addresses_address_gist",
        table_name="eni_addresses",
        postgresql_using="gist",
        postgresql_ops={"address": "inet_ops"},
    )
    op.drop_index("ix_eni_addresses_address", table_name="eni_addresses")
    op.drop_table("eni_addresses")
    op.drop_index("ix_vpcs_owner_region", table_name="vpcs")
    op.drop_index(
        "ix_vpcs_cidr_block",
        table_name="vpcs",
        postgresql_using="gist",
        postgresql_ops={"cidr_block": "inet_ops"},
    )
    op.drop_table("vpcs")
    op.drop_index("ix_subnets_vpc_id", table_name="subnets")
    op.drop_index("ix_subnets_owner_region", table_name="subnets")
    op.drop_index(
        "ix_subnets_cidr_block",
        table_name="subnets",
        postgresql_using="gist",
        postgresql_ops={"cidr_block": "inet_ops"},
    )
    op.drop_table("subnets")
    op.drop_index("ix_security_groups_vpc_id", table_name="security_groups")
    op.drop_index("ix_security_groups_owner_region", table_name="security_groups")
    op.drop_table("security_groups")
    op.drop_table("region_polls")
    op.drop_index("ix_enis_vpc_id", table_name="enis")
    op.drop_index("ix_enis_subnet_id", table_name="enis")
    op.drop_index("ix_enis_owner_region", table_name="enis")
    op.drop_index("ix_enis_attachment_instance_id", table_name="enis")
    op.drop_table("enis")
    op.drop_index("ix_ec2_instances_vpc_id", table_name="ec2_instances")
    op.drop_index("ix_ec2_instances_subnet_id", table_name="ec2_instances")
    op.drop_index("ix_ec2_instances_owner_region", table_name="ec2_instances")
    op.drop_table("ec2_instances")
    op.drop_index(
        "ix_discovery_tasks_unfinished_account",
        table_name="discovery_tasks",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_index("ix_discovery_tasks_parent_id", table_name="discovery_tasks")
    op.drop_index("ix_discovery_tasks_created_at_id", table_name="discovery_tasks")
    op.drop_table("discovery_tasks")
    op.drop_table("api_tokens")
    op.drop_table("accounts")
