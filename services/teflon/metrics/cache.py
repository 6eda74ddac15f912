"""Cached metric queries: a TTL per metric and one in-flight backend query per key.

The HPA asks every 15 s per HPA and metric, and many HPAs may ask for the same thing at once. Values are
kept for the metric's ``cacheSeconds``; concurrent misses for one key share a single backend query
instead of stampeding the backend. Failures are not cached: the next request asks again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from teflon.common.caching import SingleFlight, TTLCache
from teflon.metrics.telemetry import Telemetry

T = TypeVar("T")


class QueryCache(Generic[T]):
    """``TTLCache`` + ``SingleFlight`` for backend queries, counted as hit, shared or miss."""

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._telemetry = telemetry
        self._values: TTLCache[Hashable, T] = TTLCache(ttl=0.0, cap=max_entries, clock=clock)
        self._flight: SingleFlight[Hashable, T] = SingleFlight()

    async def get(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[T]]) -> T:
        hit, value = self._values.get(key)
        if hit:
            self._telemetry.cache_result("hit")
            return value  # type: ignore[return-value]  # a hit holds a T
        self._telemetry.cache_result("shared" if key in self._flight else "miss")

        async def fill() -> T:
            result = await compute()
            self._values.put(key, result, ttl)
            return result

        return await self._flight.run(key, fill)

    def clear(self) -> None:
        self._values.clear()
