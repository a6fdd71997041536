"""The demo cleans up only what belongs to its own namespace."""

from __future__ import annotations

from deploy.demo import namespace_streams


def test_reset_picks_the_namespace_streams_and_buckets_when_others_exist() -> None:
    existing = [
        "DEMO_POLLS",
        "DEMO_DISCOVERY",
        "KV_demo_scheduler",
        "OBJ_demo_snapshots",
        "DEMO1_POLLS",
        "KV_demo1_scheduler",
        "POLLS",
        "T1234_TASKS",
    ]

    picked = namespace_streams(existing, "demo")

    assert picked == [
        "DEMO_POLLS",
        "DEMO_DISCOVERY",
        "KV_demo_scheduler",
        "OBJ_demo_snapshots",
    ]
