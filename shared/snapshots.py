"""Moving region snapshots of any size over NATS.

A snapshot whose compressed JSON fits comfortably in one message travels
inline in `resources.discovered`. A larger one (a region with tens of
thousands of ENIs) is put in the JetStream object store, which chunks it,
and the event carries a reference with its size and SHA-256. The reconciler
checks the digest before applying and deletes the object once its
transaction has committed; the bucket's TTL removes anything left behind.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore
from pydantic import ValidationError

from shared.bus import BusNames
from shared.events import RegionSnapshot, SnapshotRef

INLINE_LIMIT = 256 * 1024
"""Largest uncompressed snapshot sent inline, well under NATS's 1 MB default."""

BUCKET_TTL = timedelta(days=1)

MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
"""Largest snapshot JSON accepted once decompressed (a region of 50,000 ENIs
is well under 100 MiB); a larger one is refused, not loaded into memory."""


class SnapshotCorrupted(Exception):
    """The stored snapshot does not match its reference (size or digest)."""


class SnapshotMissing(Exception):
    """The referenced snapshot is not (or no longer) in the object store."""


async def snapshot_bucket(js: JetStreamContext, names: BusNames) -> ObjectStore:
    """The object store bucket for snapshots, created on first use."""
    try:
        return await js.object_store(names.snapshot_bucket)
    except BucketNotFoundError:
        return await js.create_object_store(
            names.snapshot_bucket,
            config=ObjectStoreConfig(
                ttl=BUCKET_TTL.total_seconds(), storage=StorageType.FILE
            ),
        )


def encode(snapshot: RegionSnapshot) -> bytes:
    return zlib.compress(snapshot.model_dump_json().encode(), level=1)


def decode(blob: bytes) -> RegionSnapshot:
    """Decompress and parse, refusing output past `MAX_SNAPSHOT_BYTES`."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, MAX_SNAPSHOT_BYTES)
    except zlib.error as error:
        raise SnapshotCorrupted(f"not a compressed snapshot: {error}") from error
    if inflater.unconsumed_tail or not inflater.eof:
        raise SnapshotCorrupted(
            f"larger than {MAX_SNAPSHOT_BYTES} bytes once decompressed, or truncated"
        )
    try:
        return RegionSnapshot.model_validate_json(raw)
    except ValidationError as error:
        raise SnapshotCorrupted(
            f"not a region snapshot: {error.error_count()} problem(s), first at"
            f" {'.'.join(map(str, error.errors()[0]['loc'])) or 'the top'}"
        ) from error


async def store(
    js: JetStreamContext, names: BusNames, name: str, snapshot: RegionSnapshot
) -> RegionSnapshot | SnapshotRef:
    """Return the snapshot itself when small, else a reference to a stored copy.

    `name` must be unique per snapshot (task id, region and the attempt's start
    time); storing the same name again replaces the object.
    """
    raw = snapshot.model_dump_json().encode()
    if len(raw) <= INLINE_LIMIT:
        return snapshot
    blob = zlib.compress(raw, level=1)
    bucket = await snapshot_bucket(js, names)
    await bucket.put(name, blob)
    return SnapshotRef(
        bucket=names.snapshot_bucket,
        name=name,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    )


def _check_bucket(ref: SnapshotRef, names: BusNames) -> None:
    """A reference may only point into this installation's own bucket."""
    if ref.bucket != names.snapshot_bucket:
        raise SnapshotCorrupted(
            f"refers to bucket {ref.bucket!r}, not {names.snapshot_bucket!r}"
        )


async def load(
    js: JetStreamContext, names: BusNames, ref: SnapshotRef
) -> RegionSnapshot:
    """Fetch and verify a stored snapshot."""
    _check_bucket(ref, names)
    try:
        bucket = await js.object_store(ref.bucket)
        result = await bucket.get(ref.name)
    except (BucketNotFoundError, NotFoundError) as error:
        raise SnapshotMissing(f"{ref.bucket}/{ref.name}") from error
    blob = result.data or b""
    if len(blob) != ref.size or hashlib.sha256(blob).hexdigest() != ref.sha256:
        raise SnapshotCorrupted(f"{ref.bucket}/{ref.name} does not match its digest")
    return decode(blob)


async def discard(js: JetStreamContext, names: BusNames, ref: SnapshotRef) -> None:
    """Delete a stored snapshot once it has been applied (missing is fine)."""
    _check_bucket(ref, names)
    try:
        bucket = await js.object_store(ref.bucket)
        await bucket.delete(ref.name)
    except (BucketNotFoundError, NotFoundError):
        return
