"""Snapshots of any size cross NATS; a damaged one is never applied."""

from __future__ import annotations

import zlib

import pytest
from nats.aio.client import Client as NatsClient

from shared import snapshots
from shared.bus import BusNames
from shared.events import Eni, PrivateAddress, RegionSnapshot, SnapshotRef


def _snapshot(enis: int) -> RegionSnapshot:
    return RegionSnapshot(
        enis=[
            Eni(
                eni_id=f"eni-{n:08x}",
                owner_id="111111111111",
                subnet_id="subnet-1",
                private_addresses=[
                    PrivateAddress(
                        address=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                        is_primary=True,
                    )
                ],
            )
            for n in range(enis)
        ]
    )


async def test_small_snapshot_travels_inline(
    nats_client: NatsClient, names: BusNames
) -> None:
    snapshot = _snapshot(3)

    body = await snapshots.store(
        nats_client.jetstream(), names, "t/us-east-1", snapshot
    )

    assert body is snapshot


async def test_large_snapshot_is_stored_and_loaded_back(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    snapshot = _snapshot(20_000)

    ref = await snapshots.store(js, names, "task-1/us-east-1", snapshot)

    assert isinstance(ref, SnapshotRef)
    assert ref.size < 1024 * 1024 * 4
    assert await snapshots.load(js, names, ref) == snapshot
    await snapshots.discard(js, names, ref)
    with pytest.raises(snapshots.SnapshotMissing):
        await snapshots.load(js, names, ref)


async def test_snapshot_that_does_not_match_its_digest_is_refused(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    ref = await snapshots.store(js, names, "task-2/us-east-1", _snapshot(20_000))
    assert isinstance(ref, SnapshotRef)

    tampered = ref.model_copy(update={"sha256": "0" * 64})

    with pytest.raises(snapshots.SnapshotCorrupted):
        await snapshots.load(js, names, tampered)


async def test_reference_into_another_installations_bucket_is_refused(
    nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    other = BusNames(namespace=f"{names.namespace}other")
    ref = await snapshots.store(js, other, "task-3/us-east-1", _snapshot(20_000))
    assert isinstance(ref, SnapshotRef)

    with pytest.raises(snapshots.SnapshotCorrupted, match="bucket"):
        await snapshots.load(js, names, ref)
    with pytest.raises(snapshots.SnapshotCorrupted, match="bucket"):
        await snapshots.discard(js, names, ref)

    assert await snapshots.load(js, other, ref) == _snapshot(20_000)


def test_snapshot_that_inflates_past_the_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshots, "MAX_SNAPSHOT_BYTES", 1024)
    bomb = zlib.compress(b'{"enis": [' + b" " * 100_000 + b"]}")

    with pytest.raises(snapshots.SnapshotCorrupted, match="larger than"):
        snapshots.decode(bomb)


def test_blob_that_is_not_compressed_is_refused() -> None:
    with pytest.raises(snapshots.SnapshotCorrupted, match="not a compressed"):
        snapshots.decode(b"plain text")


@pytest.mark.parametrize(
    "content",
    [b'{"vpcs": [1, 2', b"[]", b'{"enis": [{"eni_id": 5}]}', b"{}", b'{"hello": "w"}'],
)
def test_blob_that_is_not_a_snapshot_is_refused(content: bytes) -> None:
    with pytest.raises(snapshots.SnapshotCorrupted, match="not a region snapshot"):
        snapshots.decode(zlib.compress(content))
