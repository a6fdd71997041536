"""The client-side rate limit per account and region."""

from __future__ import annotations

import threading
import time

import pytest

from services.poller.aws import RateLimiter, RegionCancelled


def test_calls_are_spread_to_the_rate_when_more_than_the_burst_arrive() -> None:
    limiter = RateLimiter(20, threading.Event())
    started = time.monotonic()

    for _ in range(30):
        limiter.acquire()

    # 20 calls of burst, then 10 more at 20 a second: at least half a second.
    assert time.monotonic() - started >= 0.45


def test_calls_share_the_rate_when_several_threads_call() -> None:
    limiter = RateLimiter(40, threading.Event())
    started = time.monotonic()

    threads = [
        threading.Thread(target=lambda: [limiter.acquire() for _ in range(20)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # 80 calls: 40 of burst, 40 more at 40 a second.
    assert time.monotonic() - started >= 0.95


def test_waiting_call_gives_up_when_the_region_is_cancelled() -> None:
    cancelled = threading.Event()
    limiter = RateLimiter(0.1, cancelled)
    limiter.acquire()
    threading.Timer(0.2, cancelled.set).start()
    started = time.monotonic()

    with pytest.raises(RegionCancelled):
        limiter.acquire()

    assert time.monotonic() - started < 5
