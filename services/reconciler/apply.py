"""Applying one region snapshot with set-based SQL (the reconciler's core).

The snapshot is copied into temporary staging tables, then a fixed sequence of
statements compares staging with the inventory and writes only what differs:

1. upsert everything staged, whatever its owner (an UPDATE of the rows whose
   content differs or that the account did not see yet, then an INSERT of the
   new keys); rules, addresses and group links of staged parents are replaced;
2. remove the account's ENIs and instances the snapshot lacks;
3. remove its security groups, subnets and VPCs the snapshot lacks and nothing
   uses any more (a VPC takes its subnets, groups and rules along);
4. for resources of owners outside the inventory, the account decides alone
   when no other account currently sees them (rule 4 of the domain);
5. drop the account from `seen_by` of what it no longer sees.

An unchanged re-poll therefore writes no resource row at all. The caller owns
the transaction and the lock of the region (`lock_region`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from services.reconciler.rows import StagedRows

Counts = dict[str, int]


@dataclass(frozen=True)
class Table:
    """One inventory table, how it is keyed, staged and compared."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    resource: bool = True
    parent: tuple[str, str] | None = None
    """For child rows (rules, addresses, links): (parent key column, parent table)."""
    staged_as_text: dict[str, str] = field(default_factory=dict)
    """Columns staged as text, by real type: PostgreSQL casts them in C, where
    asyncpg would parse every address in Python (and has no binary macaddr)."""

    @property
    def stage(self) -> str:
        return f"stage_{self.name}"

    @property
    def content(self) -> tuple[str, ...]:
        return tuple(column for column in self.columns if column not in self.key)

    def staged(self, column: str, alias: str | None = "s") -> str:
        """A staged column as the inventory's type."""
        name = f"{alias}.{column}" if alias else column
        real = self.staged_as_text.get(column)
        return f"{name}::{real}" if real else name

    def staging_select(self) -> str:
        def staged_type(column: str) -> str:
            return "text[]" if self.staged_as_text[column].endswith("[]") else "text"

        return ", ".join(
            f"{column}::{staged_type(column)} AS {column}"
            if column in self.staged_as_text
            else column
            for column in self.columns
        )


VPCS = Table(
    "vpcs",
    ("vpc_id",),
    (
        "vpc_id",
        "owner_account_id",
        "state",
        "cidr_block",
        "cidr_blocks",
        "ipv6_cidr_blocks",
        "is_default",
        "dhcp_options_id",
        "instance_tenancy",
        "tags",
    ),
    staged_as_text={
        "cidr_block": "cidr",
        "cidr_blocks": "cidr[]",
        "ipv6_cidr_blocks": "cidr[]",
    },
)
SUBNETS = Table(
    "subnets",
    ("subnet_id",),
    (
        "subnet_id",
        "owner_account_id",
        "vpc_id",
        "availability_zone",
        "availability_zone_id",
        "cidr_block",
        "ipv6_cidr_blocks",
        "state",
        "available_ip_address_count",
        "map_public_ip_on_launch",
        "default_for_az",
        "subnet_arn",
        "tags",
    ),
    staged_as_text={"cidr_block": "cidr", "ipv6_cidr_blocks": "cidr[]"},
)
SECURITY_GROUPS = Table(
    "security_groups",
    ("group_id",),
    ("group_id", "owner_account_id", "group_name", "vpc_id", "description", "tags"),
)
SECURITY_GROUP_RULES = Table(
    "security_group_rules",
    ("rule_id",),
    (
        "rule_id",
        "group_id",
        "group_owner_id",
        "is_egress",
        "ip_protocol",
        "from_port",
        "to_port",
        "cidr_ipv4",
        "cidr_ipv6",
        "prefix_list_id",
        "referenced_group_id",
        "referenced_group_owner_id",
        "referenced_vpc_id",
        "referenced_vpc_peering_connection_id",
        "description",
        "tags",
    ),
    resource=False,
    parent=("group_id", "security_groups"),
    staged_as_text={"cidr_ipv4": "cidr", "cidr_ipv6": "cidr"},
)
ENIS = Table(
    "enis",
    ("eni_id",),
    (
        "eni_id",
        "owner_account_id",
        "vpc_id",
        "subnet_id",
        "availability_zone",
        "interface_type",
        "status",
        "description",
        "mac_address",
        "private_ip",
        "private_dns_name",
        "requester_id",
        "requester_managed",
        "source_dest_check",
        "attachment_id",
        "attachment_instance_id",
        "attachment_instance_owner_id",
        "attachment_device_index",
        "attachment_network_card_index",
        "attachment_status",
        "attachment_attach_time",
        "attachment_delete_on_termination",
        "tags",
    ),
    staged_as_text={"mac_address": "macaddr", "private_ip": "inet"},
)
ENI_ADDRESSES = Table(
    "eni_addresses",
    ("eni_id", "address"),
    (
        "eni_id",
        "address",
        "kind",
        "is_primary",
        "private_address",
        "private_dns_name",
        "public_dns_name",
        "public_ip_owner_id",
        "allocation_id",
        "association_id",
    ),
    resource=False,
    parent=("eni_id", "enis"),
    staged_as_text={"address": "inet", "private_address": "inet"},
)
ENI_SECURITY_GROUPS = Table(
    "eni_security_groups",
    ("eni_id", "group_id"),
    ("eni_id", "group_id"),
    resource=False,
    parent=("eni_id", "enis"),
)
EC2_INSTANCES = Table(
    "ec2_instances",
    ("instance_id",),
    (
        "instance_id",
        "owner_account_id",
        "instance_type",
        "state",
        "vpc_id",
        "subnet_id",
        "availability_zone",
        "private_ip",
        "public_ip",
        "private_dns_name",
        "public_dns_name",
        "image_id",
        "launch_time",
        "platform",
        "architecture",
        "key_name",
        "iam_instance_profile_arn",
        "eni_ids",
        "tags",
    ),
    staged_as_text={"private_ip": "inet", "public_ip": "inet"},
)

TABLES = (
    VPCS,
    SUBNETS,
    SECURITY_GROUPS,
    SECURITY_GROUP_RULES,
    ENIS,
    ENI_ADDRESSES,
    ENI_SECURITY_GROUPS,
    EC2_INSTANCES,
)
COUNTED = (
    "vpcs",
    "subnets",
    "security_groups",
    "security_group_rules",
    "enis",
    "eni_addresses",
    "ec2_instances",
)


@dataclass
class ApplyResult:
    """What one apply changed, by resource type."""

    added: Counts = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    updated: Counts = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    removed: Counts = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))

    def as_dict(self) -> dict[str, Counts]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed}

    def total(self, kind: str) -> int:
        counts: Counts = getattr(self, kind)
        return sum(counts.values())


def _rowcount(status: str) -> int:
    """The row count of a command status such as `INSERT 0 12` or `DELETE 3`."""
    return int(status.rsplit(" ", 1)[-1])


async def lock_region(connection: asyncpg.Connection, region: str) -> None:
    """Serialize every write of one region's resources until the commit.

    Shared resources of a region (a VPC seen by its owner and by participants)
    are written by several accounts' snapshots; one lock per region keeps their
    applies (and account removals) from interleaving or deadlocking.
    """
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtext('inventory.region'), hashtext($1))",
        region,
    )


async def apply_snapshot(
    connection: asyncpg.Connection, account_id: str, region: str, staged: StagedRows
) -> ApplyResult:
    """Make the inventory of `region` agree with `account_id`'s snapshot."""
    result = ApplyResult()
    await _stage(connection, staged)
    for table in TABLES:
        await _upsert(connection, table, account_id, region, result)
    await _remove_gone(connection, account_id, region, result)
    for table in (VPCS, SUBNETS, SECURITY_GROUPS, ENIS, EC2_INSTANCES):
        await _forget_unseen(connection, table, account_id, region)
    return result


async def _stage(connection: asyncpg.Connection, staged: StagedRows) -> None:
    for table in TABLES:
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {table.stage} ON COMMIT DELETE ROWS"
            f" AS SELECT {table.staging_select()} FROM {table.name} WITH NO DATA"
        )
        # Keyed, so a plan made from stale statistics (a table just filled)
        # still finds staged rows by index rather than by scanning them.
        keys = ", ".join(f"({table.staged(key, alias=None)})" for key in table.key)
        await connection.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {table.stage}_key"
            f" ON {table.stage} ({keys})"
        )
        await connection.execute(f"TRUNCATE {table.stage}")
        rows = staged.table(table.name)
        if rows:
            await connection.copy_records_to_table(
                table.stage, records=rows, columns=list(table.columns)
            )


def _match(table: Table) -> str:
    """Inventory row `t` and staged row `s` have the same key."""
    return " AND ".join(f"t.{key} = {table.staged(key)}" for key in table.key)


def _differs(table: Table) -> str:
    old = ", ".join(f"t.{column}" for column in table.content)
    new = ", ".join(table.staged(column) for column in table.content)
    if table.resource:
        old, new = f"{old}, t.region", f"{new}, $1::varchar"
    return f"ROW({old}) IS DISTINCT FROM ROW({new})"


async def _upsert(
    connection: asyncpg.Connection,
    table: Table,
    account_id: str,
    region: str,
    result: ApplyResult,
) -> None:
    if table.parent is not None:
        await _remove_replaced_children(connection, table, result)
    if table.content:
        await _update_changed(connection, table, account_id, region, result)
    await _insert_new(connection, table, account_id, region, result)


async def _remove_replaced_children(
    connection: asyncpg.Connection, table: Table, result: ApplyResult
) -> None:
    """Children of a staged parent that the snapshot no longer gives it."""
    assert table.parent is not None
    parent_key, parent_table = table.parent
    status = await connection.execute(
        f"DELETE FROM {table.name} t USING stage_{parent_table} p"
        f" WHERE t.{parent_key} = p.{parent_key} AND NOT EXISTS"
        f" (SELECT 1 FROM {table.stage} s WHERE {_match(table)})"
    )
    if table.name in result.removed:
        result.removed[table.name] += _rowcount(status)


async def _update_changed(
    connection: asyncpg.Connection,
    table: Table,
    account_id: str,
    region: str,
    result: ApplyResult,
) -> None:
    differs = _differs(table)
    assignments = [f"{column} = {table.staged(column)}" for column in table.content]
    if not table.resource:
        status = await connection.execute(
            f"UPDATE {table.name} t SET {', '.join(assignments)} FROM {table.stage} s"
            f" WHERE {_match(table)} AND {differs}"
        )
        result.updated[table.name] += _rowcount(status)
        return
    # A row only newly seen by this account gains it in seen_by, nothing else.
    assignments += [
        "region = $1",
        f"reported_by = CASE WHEN {differs} THEN $2 ELSE t.reported_by END",
        f"updated_at = CASE WHEN {differs} THEN now() ELSE t.updated_at END",
        "seen_by = CASE WHEN $2 = ANY(t.seen_by) THEN t.seen_by"
        " ELSE array_append(t.seen_by, $2::varchar) END",
    ]
    changed = await connection.fetchval(
        f"WITH changed AS (UPDATE {table.name} t SET {', '.join(assignments)}"
        f" FROM {table.stage} s WHERE {_match(table)}"
        f" AND ({differs} OR NOT $2 = ANY(t.seen_by))"
        " RETURNING t.updated_at = now() AS content_changed)"
        " SELECT count(*) FILTER (WHERE content_changed) FROM changed",
        region,
        account_id,
    )
    result.updated[table.name] += changed


async def _insert_new(
    connection: asyncpg.Connection,
    table: Table,
    account_id: str,
    region: str,
    result: ApplyResult,
) -> None:
    columns = list(table.columns)
    values = [table.staged(column) for column in table.columns]
    arguments: list[str] = []
    if table.resource:
        columns += ["region", "reported_by", "seen_by"]
        values += ["$1", "$2", "ARRAY[$2]::varchar[]"]
        arguments = [region, account_id]
    status = await connection.execute(
        f"INSERT INTO {table.name} ({', '.join(columns)})"
        f" SELECT {', '.join(values)} FROM {table.stage} s WHERE NOT EXISTS"
        f" (SELECT 1 FROM {table.name} t WHERE {_match(table)})",
        *arguments,
    )
    if table.name in result.added:
        result.added[table.name] += _rowcount(status)


# The account decides a row's fate: it owns it, or no other account currently
# sees it and its owner cannot vouch for it either, being outside the
# inventory, registered without polling (`manual`), inactive or no longer
# polling the row's region. Otherwise a region removed from the owner would
# leave its VPCs behind for good once the last participant stopped seeing them.
_DECIDES = (
    "(t.owner_account_id = $2 OR (t.seen_by <@ ARRAY[$2]::varchar[]"
    " AND NOT EXISTS (SELECT 1 FROM accounts a"
    " WHERE a.account_id = t.owner_account_id AND a.auth_method = 'instance_role'"
    " AND a.is_active AND t.region = ANY(a.default_regions))))"
)


def _gone(table: Table) -> str:
    """Rows of the region the account decides and its snapshot lacks."""
    return (
        f"t.region = $1 AND {_DECIDES} AND NOT EXISTS"
        f" (SELECT 1 FROM {table.stage} s WHERE {_match(table)})"
    )


_UNUSED_GROUP = (
    "NOT EXISTS (SELECT 1 FROM eni_security_groups l WHERE l.group_id = t.group_id)"
)
_UNUSED_SUBNET = (
    "NOT EXISTS (SELECT 1 FROM enis e WHERE e.subnet_id = t.subnet_id)"
    " AND NOT EXISTS (SELECT 1 FROM ec2_instances i WHERE i.subnet_id = t.subnet_id)"
)
# Checked after the gone groups and subnets are removed: what is left in the
# VPC is used, still reported, or decided by another account (a participant's
# own security group in a shared VPC), and keeps the VPC.
_UNUSED_VPC = (
    "NOT EXISTS (SELECT 1 FROM enis e WHERE e.vpc_id = t.vpc_id)"
    " AND NOT EXISTS (SELECT 1 FROM ec2_instances i WHERE i.vpc_id = t.vpc_id)"
    " AND NOT EXISTS (SELECT 1 FROM subnets n WHERE n.vpc_id = t.vpc_id)"
    " AND NOT EXISTS (SELECT 1 FROM security_groups g WHERE g.vpc_id = t.vpc_id)"
)


async def _remove_gone(
    connection: asyncpg.Connection, account_id: str, region: str, result: ApplyResult
) -> None:
    removed = result.removed
    arguments = (region, account_id)

    async def delete(sql: str) -> int:
        return _rowcount(await connection.execute(sql, *arguments))

    # One scan finds the gone ENIs; their addresses are counted, then all go.
    gone_enis = await connection.fetchval(
        f"SELECT coalesce(array_agg(t.eni_id), '{{}}') FROM enis t WHERE {_gone(ENIS)}",
        *arguments,
    )
    if gone_enis:
        for table in ("eni_addresses", "enis"):
            status = await connection.execute(
                f"DELETE FROM {table} WHERE eni_id = ANY($1::varchar[])", gone_enis
            )
            removed[table] += _rowcount(status)
    removed["ec2_instances"] += await delete(
        f"DELETE FROM ec2_instances t WHERE {_gone(EC2_INSTANCES)}"
    )

    groups = (
        f"SELECT t.group_id FROM security_groups t"
        f" WHERE {_gone(SECURITY_GROUPS)} AND {_UNUSED_GROUP}"
    )
    removed["security_group_rules"] += await delete(
        f"DELETE FROM security_group_rules WHERE group_id IN ({groups})"
    )
    removed["security_groups"] += await delete(
        f"DELETE FROM security_groups WHERE group_id IN ({groups})"
    )
    removed["subnets"] += await delete(
        f"DELETE FROM subnets t WHERE {_gone(SUBNETS)} AND {_UNUSED_SUBNET}"
    )

    removed["vpcs"] += await delete(
        f"DELETE FROM vpcs t WHERE {_gone(VPCS)} AND {_UNUSED_VPC}"
    )


async def _forget_unseen(
    connection: asyncpg.Connection, table: Table, account_id: str, region: str
) -> None:
    """The account no longer sees what its snapshot lacks (rows kept by the rules)."""
    await connection.execute(
        f"UPDATE {table.name} t SET seen_by = array_remove(t.seen_by, $2::varchar)"
        f" WHERE t.region = $1 AND t.seen_by @> ARRAY[$2]::varchar[]"
        f" AND NOT EXISTS (SELECT 1 FROM {table.stage} s"
        f" WHERE {_match(table)})",
        region,
        account_id,
    )


def merge_counts(results: list[ApplyResult]) -> Counts:
    """Removed rows by type over several applies (account or region removal)."""
    total: Counts = defaultdict(int)
    for result in results:
        for kind, count in result.removed.items():
            total[kind] += count
    return dict(total)
