"""A TTL cache with one in-flight computation per key.

The HPA asks every 15 s per HPA and metric, and many HPAs may ask for the same thing at once. Values are
kept for the metric's ``cacheSeconds``; concurrent misses for one key share a single backend query
instead of stampeding the backend. Failures are not cached: the next request asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from teflon.metrics.telemetry import Telemetry

T = TypeVar("T")


class TTLCache(Generic[T]):
    def __init__(
        self,
        telemetry: Telemetry,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._telemetry = telemetry
        self._max = max_entries
        self._clock = clock
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        hit = self._values.get(key)
        if hit is not None and hit[0] > now:
            self._telemetry.cache_result("hit")
            return hit[1]
        task = self._inflight.get(key)
        if task is not None:
            self._telemetry.cache_result("shared")
        else:
            self._telemetry.cache_result("miss")
            task = asyncio.ensure_future(self._run(key, ttl, compute))
            self._inflight[key] = task
            # the exception is re-raised to every waiter; this only keeps a lone failure from being
            # reported as "never retrieved" when its only caller went away
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        # shield: a caller that goes away (client disconnect) must not cancel the query others share
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            if ttl > 0:
                self._store(key, self._clock() + ttl, value)
            return value
        finally:
            del self._inflight[key]

    def _store(self, key: Hashable, expires: float, value: T) -> None:
        if len(self._values) >= self._max:
            now = self._clock()
            for k in [k for k, (exp, _) in self._values.items() if exp <= now]:
                del self._values[k]
            while len(self._values) >= self._max:
                del self._values[next(iter(self._values))]
        self._values[key] = (expires, value)

    def clear(self) -> None:
        self._values.clear()
