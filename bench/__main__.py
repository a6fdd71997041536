"""Run every benchmark, or those named: `python -m bench reconciler poller`."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
import time

import bench


def _sections(wanted: list[str]) -> list[str]:
    found = sorted(
        module.name.removeprefix("bench_")
        for module in pkgutil.iter_modules(bench.__path__)
        if module.name.startswith("bench_")
    )
    unknown = set(wanted) - set(found)
    if unknown:
        raise SystemExit(f"unknown benchmark {sorted(unknown)}; known: {found}")
    return [name for name in found if not wanted or name in wanted]


def main() -> None:
    for name in _sections(sys.argv[1:]):
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"\n== {name}", flush=True)
        started = time.perf_counter()
        result = module.main()
        if inspect.isawaitable(result):
            asyncio.run(result)
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
