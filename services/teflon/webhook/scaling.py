"""The scaling guardrail: a compromised workload is never scaled out by its own alerts.

Two parts, both per replica and in memory (the metrics server asks every replica and honours a hold
any of them reports, so the replica that acted is enough):

- alerts about a pod teflon acted on (an enforced response applied here, or a pod seen carrying
  teflon's isolation label or quarantine mark) are not counted in the rates for ``holdMinutes``;
- the pod and its workload are *held* for ``holdMinutes`` after an enforced response: the rate API
  lists them in ``held``, and the metrics server answers an error for them (``hold: error``, the
  HPA holds its replica count) or caps their value at the rate before the response (``hold: cap``).

A restarted replica forgets its holds; pods it then sees marked by teflon are muted again as their
alerts arrive.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from teflon.common.wire import HeldObject, Priority, RateScope, RatesQuery, Signal
from teflon.webhook.alert import Alert
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Guardrail, HoldMode
from teflon.webhook.rates import RateTracker, Workload

_MAX_TRACKED = 10_000
_BEFORE_WINDOW, _RECENT_WINDOW = 300, 60


def _trim(table: OrderedDict[Any, Any]) -> None:
    """Forget the least recently touched entries past the bound: memory stays bounded under any load."""
    while len(table) > _MAX_TRACKED:
        table.popitem(last=False)


@dataclass
class _Hold:
    since: float
    until: float
    # Per signal, the rate (per minute) in the four minutes before the minute of the response.
    before: dict[Signal, float] = field(default_factory=dict)


class ScalingGuard:
    """Muted pods and held objects, bounded and expiring; used from the event loop only."""

    def __init__(self, rates: RateTracker, *, clock: Callable[[], float] = time.time) -> None:
        self._rates = rates
        self._clock = clock
        self._muted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._holds: OrderedDict[tuple[str, str, str], _Hold] = OrderedDict()

    def count_alert(self, cfg: Guardrail | None, alert: Alert, workload: Workload | None) -> None:
        """Count ``alert`` in the rates, unless its pod is muted (``cfg`` None: no policy yet, count)."""
        if cfg is not None and self.muted(cfg, alert.namespace, alert.pod):
            return
        self._rates.record(
            Signal.ALERTS,
            alert.rule,
            alert.priority,
            namespace=alert.namespace,
            pod=alert.pod,
            workload=workload,
        )

    def responded(
        self, cfg: Guardrail, rule: str, priority: Priority, pod: PodRef, workload: Workload | None
    ) -> None:
        """Count an applied enforced response, then mute the pod and hold it and its workload."""
        self._rates.record(
            Signal.RESPONSES, rule, priority, namespace=pod.namespace, pod=pod.name, workload=workload
        )
        self.acted(cfg, pod.namespace, pod.name, workload)

    def muted(self, cfg: Guardrail, namespace: str | None, pod: str | None) -> bool:
        """Whether alerts about this pod are kept out of the rates now."""
        if not cfg.enabled or namespace is None or pod is None:
            return False
        until = self._muted.get((namespace, pod))
        return until is not None and self._clock() < until

    def mute(self, cfg: Guardrail, namespace: str, pod: str) -> None:
        """Keep this pod's alerts out of the rates for ``holdMinutes`` (it carries teflon's marks)."""
        if not cfg.enabled:
            return
        self._muted[(namespace, pod)] = self._clock() + cfg.hold_minutes * 60
        self._muted.move_to_end((namespace, pod))
        _trim(self._muted)

    def _before(self, scope: RateScope, namespace: str, kind: str, name: str) -> dict[Signal, float]:
        out: dict[Signal, float] = {}
        for signal in Signal:

            def count(window: int, signal: Signal = signal) -> int:
                entries = self._rates.entries(
                    scope, signal, window, namespace=namespace, kind=kind, name=name
                )
                return sum(e.count for e in entries)

            spread = (_BEFORE_WINDOW - _RECENT_WINDOW) / 60
            out[signal] = max(0, count(_BEFORE_WINDOW) - count(_RECENT_WINDOW)) / spread
        return out

    def acted(self, cfg: Guardrail, namespace: str, pod: str, workload: Workload | None) -> None:
        """An enforced response was applied to ``pod``: mute it and hold it and its workload."""
        if not cfg.enabled:
            return
        self.mute(cfg, namespace, pod)
        now = self._clock()
        until = now + cfg.hold_minutes * 60
        held = [(RateScope.POD, "Pod", pod)]
        if workload is not None:
            held.append((RateScope.WORKLOAD, workload.kind, workload.name))
        for scope, kind, name in held:
            key = (namespace, kind, name)
            current = self._holds.get(key)
            if current is not None and now < current.until:
                current.until = until  # the rate before the *first* response stays the cap
            else:
                self._holds[key] = _Hold(now, until, self._before(scope, namespace, kind, name))
            self._holds.move_to_end(key)
        _trim(self._holds)

    def held(self, cfg: Guardrail, query: RatesQuery) -> list[HeldObject]:
        """The held objects a rate query covers (none for namespaces, none with the guardrail off)."""
        if not cfg.enabled or query.scope is RateScope.NAMESPACE:
            return []
        now = self._clock()
        out: list[HeldObject] = []
        for (namespace, kind, name), hold in list(self._holds.items()):
            if now >= hold.until:
                del self._holds[(namespace, kind, name)]
                continue
            if (kind == "Pod") != (query.scope is RateScope.POD):
                continue
            if query.namespace is not None and namespace != query.namespace:
                continue
            if query.kind is not None and kind.lower() != query.kind.lower():
                continue
            if query.name is not None and name != query.name:
                continue
            cap = hold.before.get(query.signal, 0.0) if cfg.hold is HoldMode.CAP else None
            out.append(
                HeldObject(
                    namespace=namespace,
                    kind=kind,
                    name=name,
                    since=datetime.fromtimestamp(hold.since, tz=UTC),
                    until=datetime.fromtimestamp(hold.until, tz=UTC),
                    cap_per_minute=cap,
                )
            )
        return out
