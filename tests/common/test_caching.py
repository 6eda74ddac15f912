"""The shared TTL cache and single-flight helper."""

from __future__ import annotations

import asyncio

import pytest

from teflon.common.caching import SingleFlight, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_values_expire_after_their_ttl_and_none_is_a_value() -> None:
    clock = Clock()
    cache: TTLCache[str, int | None] = TTLCache(ttl=10, cap=10, clock=clock)
    cache.put("a", None)
    cache.put("b", 2, ttl=1)
    assert cache.get("a") == (True, None)
    assert cache.get("b") == (True, 2)
    assert cache.get("c") == (False, None)
    clock.now = 1.0
    assert cache.get("b") == (False, None)
    clock.now = 10.0
    assert cache.get("a") == (False, None)
    cache.put("z", 0, ttl=0)
    assert cache.get("z") == (False, None)


def test_a_full_cache_drops_expired_values_first_then_the_oldest() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl=10, cap=3, clock=clock)
    cache.put("old", 1)
    cache.put("short", 2, ttl=1)
    cache.put("young", 3)
    clock.now = 2.0
    cache.put("new", 4)  # "short" has expired: it goes, nothing else
    assert [cache.get(k)[0] for k in ("old", "young", "new")] == [True, True, True]
    cache.put("newer", 5)  # full of live values: the oldest goes
    assert cache.get("old") == (False, None)
    assert len(cache) == 3


async def test_concurrent_callers_share_one_computation_and_its_failure() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("down")

    waiters = [asyncio.create_task(flight.run("k", compute)) for _ in range(3)]
    await asyncio.sleep(0)
    assert "k" in flight
    release.set()
    for w in waiters:
        with pytest.raises(RuntimeError, match="down"):
            await w
    assert calls == 1
    assert "k" not in flight
