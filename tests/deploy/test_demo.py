"""The demo cleans up only what belongs to its own namespace."""

from __future__ import annotations

from pathlib import Path

from deploy.demo import demo_namespace, namespace_streams
from shared.settings import BaseServiceSettings


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


def test_each_state_directory_has_a_namespace_of_its_own(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / ".demo", tmp_path / "b" / ".demo"

    names = {
        demo_namespace(first),
        demo_namespace(second),
        demo_namespace(first / "slot-1"),
    }

    assert len(names) == 3
    assert demo_namespace(first) == demo_namespace(
        tmp_path / "a" / "x" / ".." / ".demo"
    )
    for name in names:
        assert BaseServiceSettings(nats_namespace=name).nats_namespace == name


def test_one_demo_namespace_is_never_the_prefix_of_another(tmp_path: Path) -> None:
    name = demo_namespace(tmp_path / ".demo")
    existing = [
        f"{name.upper()}_POLLS",
        f"KV_{name}_scheduler",
        f"OBJ_{name}_snapshots",
    ]

    assert namespace_streams(existing, "demo") == []
    assert namespace_streams(existing, name) == existing
