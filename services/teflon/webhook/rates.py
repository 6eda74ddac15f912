"""Windowed counts of alerts and responses per pod, per owning workload and per namespace.

Counts sit in 5-second buckets kept for the longest window (5 minutes), per (signal, rule, priority) so
the rate API can filter by rule and minimum priority. Memory is bounded twice: objects unseen for the TTL
are swept, and past the cap the least recently seen object is dropped (and snapshots say they may be
incomplete until the dropped counts would have left every window anyway).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from teflon.common.wire import RATE_WINDOWS, Priority, RateEntry, RateScope, Signal

RESOLUTION_SECONDS = 5
_KEEP_BUCKETS = max(RATE_WINDOWS) // RESOLUTION_SECONDS

Key = tuple[RateScope, str, str, str]  # scope, namespace, kind, name
SeriesKey = tuple[Signal, str, int]  # signal, rule, priority


class _Tracked:
    """One object's counts: per series a flat list ``[bucket, count, bucket, count, ...]``."""

    __slots__ = ("last_seen", "series")

    def __init__(self) -> None:
        self.last_seen = 0.0
        self.series: dict[SeriesKey, list[int]] = {}

    def add(self, skey: SeriesKey, bucket: int, n: int) -> None:
        flat = self.series.get(skey)
        if flat is None:
            self.series[skey] = [bucket, n]
            return
        if flat[-2] == bucket:
            flat[-1] += n
            return
        oldest = bucket - _KEEP_BUCKETS
        if flat[0] <= oldest:
            i = 0
            while i < len(flat) and flat[i] <= oldest:
                i += 2
            del flat[:i]
        flat.extend((bucket, n))

    def count(
        self, signal: Signal, first_bucket: int, min_priority: Priority | None, rule: str | None
    ) -> int:
        total = 0
        for (sig, srule, prio), flat in self.series.items():
            if sig != signal or (rule is not None and srule != rule):
                continue
            if min_priority is not None and prio < min_priority:
                continue
            for i in range(len(flat) - 2, -1, -2):
                if flat[i] < first_bucket:
                    break
                total += flat[i + 1]
        return total


@dataclass(frozen=True)
class Workload:
    """The top-level controller of a pod (Deployment, StatefulSet, DaemonSet, Job, CronJob, ...)."""

    kind: str
    name: str


class RateTracker:
    """Bounded windowed counters; not thread-safe (used from the event loop only)."""

    def __init__(
        self, *, max_tracked: int, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_tracked = max_tracked
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._objects: OrderedDict[Key, _Tracked] = OrderedDict()
        self._index: dict[tuple[RateScope, str], dict[Key, _Tracked]] = {}
        self._incomplete_until = 0.0
        self._counts = dict.fromkeys(RateScope, 0)
        self._series_keys: dict[SeriesKey, SeriesKey] = {}
        self._bucket = 0
        self.evicted_for_cap = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._objects)

    def tracked(self, scope: RateScope) -> int:
        return self._counts[scope]

    def _touch(self, key: Key, now: float) -> _Tracked:
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = _Tracked()
            self._counts[key[0]] += 1
            self._index.setdefault((key[0], key[1]), {})[key] = obj
            if len(self._objects) > self.max_tracked:
                self._evict_oldest(now)
        else:
            self._objects.move_to_end(key)
        obj.last_seen = now
        return obj

    def _drop(self, key: Key) -> _Tracked:
        obj = self._objects.pop(key)
        self._counts[key[0]] -= 1
        bucket = self._index.get((key[0], key[1]))
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._index[(key[0], key[1])]
        return obj

    def _evict_oldest(self, now: float) -> None:
        key = next(iter(self._objects))
        obj = self._drop(key)
        self.evicted_for_cap += 1
        if now - obj.last_seen < max(RATE_WINDOWS):
            self._incomplete_until = max(self._incomplete_until, obj.last_seen + max(RATE_WINDOWS))

    def record(
        self,
        signal: Signal,
        rule: str,
        priority: Priority,
        *,
        namespace: str | None,
        pod: str | None = None,
        workload: Workload | None = None,
        n: int = 1,
    ) -> None:
        """Count ``n`` events now for the pod, its workload and its namespace (whichever are known)."""
        if namespace is None:
            return
        now = self._clock()
        bucket = int(now // RESOLUTION_SECONDS)
        if bucket == self._bucket:
            bucket = self._bucket  # one int object per bucket, shared by every series that holds it
        else:
            self._bucket = bucket
        # Series keys repeat across objects (same rule, same priority): share one tuple per key.
        skey: SeriesKey = (signal, rule, int(priority))
        skey = self._series_keys.setdefault(skey, skey)
        if len(self._series_keys) > 10_000:  # rule names are bounded, but never trust a sender
            self._series_keys.clear()
        self._touch((RateScope.NAMESPACE, namespace, "Namespace", namespace), now).add(skey, bucket, n)
        if pod is not None:
            self._touch((RateScope.POD, namespace, "Pod", pod), now).add(skey, bucket, n)
        if workload is not None:
            key = (RateScope.WORKLOAD, namespace, workload.kind, workload.name)
            self._touch(key, now).add(skey, bucket, n)

    def sweep(self) -> int:
        """Forget objects unseen for the TTL; returns how many were dropped."""
        cutoff = self._clock() - self.ttl_seconds
        dropped = 0
        while self._objects:
            key, obj = next(iter(self._objects.items()))
            if obj.last_seen >= cutoff:
                break
            self._drop(key)
            dropped += 1
        self.expired += dropped
        return dropped

    @property
    def complete(self) -> bool:
        return self._clock() >= self._incomplete_until

    def _candidates(self, scope: RateScope, namespace: str | None) -> Iterable[tuple[Key, _Tracked]]:
        if namespace is not None:
            return list(self._index.get((scope, namespace), {}).items())
        return [(k, o) for k, o in self._objects.items() if k[0] is scope]

    def entries(
        self,
        scope: RateScope,
        signal: Signal,
        window_seconds: int,
        *,
        namespace: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        min_priority: Priority | None = None,
        rule: str | None = None,
    ) -> list[RateEntry]:
        """Non-zero counts over the last ``window_seconds`` for objects matching the filters."""
        now = self._clock()
        first_bucket = int(now // RESOLUTION_SECONDS) - window_seconds // RESOLUTION_SECONDS + 1
        out: list[RateEntry] = []
        for (_scope, ns, okind, oname), obj in self._candidates(scope, namespace):
            if (kind is not None and okind.lower() != kind.lower()) or (name is not None and oname != name):
                continue
            count = obj.count(signal, first_bucket, min_priority, rule)
            if count:
                out.append(
                    RateEntry(
                        namespace=ns,
                        kind=okind,
                        name=oname,
                        count=count,
                        last_seen=datetime.fromtimestamp(obj.last_seen, tz=UTC),
                    )
                )
        return out
