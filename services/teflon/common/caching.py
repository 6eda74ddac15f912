"""One typed TTL cache and one single-flight helper, for every component that caches API answers.

``TTLCache`` keeps values for a time-to-live, bounded in entries (expired ones go first, then the
oldest). ``SingleFlight`` lets concurrent callers asking for one key share one computation instead of
stampeding the API behind it; a caller that goes away does not cancel the computation others share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values by key for ``ttl`` seconds (or a ttl given per value), at most ``cap`` entries."""

    def __init__(self, *, ttl: float, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.cap = cap
        self._clock = clock
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` while ``key`` has an unexpired value, else ``(False, None)``."""
        hit = self._data.get(key)
        if hit is None or hit[0] <= self._clock():
            return False, None
        return True, hit[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep ``value`` for ``ttl`` seconds (the cache's own when None); 0 or less keeps nothing."""
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            return
        now = self._clock()
        self._data.pop(key, None)
        if len(self._data) >= self.cap:
            for k in [k for k, (expires, _) in self._data.items() if expires <= now]:
                del self._data[k]
            while len(self._data) >= self.cap:
                del self._data[next(iter(self._data))]
        self._data[key] = (now + seconds, value)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight(Generic[K, V]):
    """At most one computation in flight per key; concurrent callers of ``run`` share its result."""

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._inflight

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The result (or the exception) of ``compute``, started now or shared with a running one."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(key, compute))
            self._inflight[key] = task
            # The exception reaches every waiter; this only keeps a lone failure from being reported as
            # "never retrieved" when its only caller went away.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        # shield: a caller that goes away (a client disconnect) must not cancel what others share
        return await asyncio.shield(task)

    async def _run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        try:
            return await compute()
        finally:
            del self._inflight[key]
