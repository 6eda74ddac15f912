"""Windowed counts per pod, workload and namespace, bounded in memory."""

from __future__ import annotations

from teflon.common.wire import Priority, RateScope, Signal
from teflon.webhook.rates import RateTracker, Workload

from .clock import FakeClock

WEB = Workload("Deployment", "web")


def tracker(clock: FakeClock, **kw: float) -> RateTracker:
    return RateTracker(max_tracked=int(kw.get("cap", 1000)), ttl_seconds=kw.get("ttl", 900), clock=clock)


def counts(t: RateTracker, scope: RateScope, window: int = 60, **kw: object) -> dict[str, int]:
    return {e.name: e.count for e in t.entries(scope, Signal.ALERTS, window, **kw)}  # type: ignore[arg-type]


def test_an_alert_counts_for_its_pod_its_workload_and_its_namespace() -> None:
    t = tracker(FakeClock())
    t.record(Signal.ALERTS, "r", Priority.WARNING, namespace="shop", pod="web-1", workload=WEB)
    t.record(Signal.ALERTS, "r", Priority.WARNING, namespace="shop", pod="web-2", workload=WEB)
    assert counts(t, RateScope.POD) == {"web-1": 1, "web-2": 1}
    assert counts(t, RateScope.WORKLOAD) == {"web": 2}
    assert counts(t, RateScope.NAMESPACE) == {"shop": 2}
    (entry,) = t.entries(RateScope.WORKLOAD, Signal.ALERTS, 60)
    assert (entry.namespace, entry.kind) == ("shop", "Deployment")


def test_alerts_leave_the_one_minute_window_but_stay_in_the_five_minute_one() -> None:
    clock = FakeClock(1_000_000.0)
    t = tracker(clock)
    t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="ns", pod="p")
    clock.advance(30)
    t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="ns", pod="p", n=2)
    assert counts(t, RateScope.POD, 60) == {"p": 3}
    clock.advance(45)
    assert counts(t, RateScope.POD, 60) == {"p": 2}
    assert counts(t, RateScope.POD, 300) == {"p": 3}
    clock.advance(300)
    assert counts(t, RateScope.POD, 300) == {}


def test_rates_filter_by_minimum_priority_rule_namespace_kind_and_name() -> None:
    t = tracker(FakeClock())
    t.record(Signal.ALERTS, "shell", Priority.NOTICE, namespace="a", pod="p1", workload=WEB)
    t.record(Signal.ALERTS, "drop", Priority.CRITICAL, namespace="a", pod="p1", workload=WEB)
    t.record(
        Signal.ALERTS,
        "shell",
        Priority.CRITICAL,
        namespace="b",
        pod="p2",
        workload=Workload("StatefulSet", "db"),
    )
    assert counts(t, RateScope.POD, min_priority=Priority.ERROR) == {"p1": 1, "p2": 1}
    assert counts(t, RateScope.POD, rule="shell") == {"p1": 1, "p2": 1}
    assert counts(t, RateScope.POD, namespace="a") == {"p1": 2}
    assert counts(t, RateScope.WORKLOAD, kind="statefulset") == {"db": 1}
    assert counts(t, RateScope.WORKLOAD, name="web") == {"web": 2}


def test_responses_are_counted_apart_from_alerts() -> None:
    t = tracker(FakeClock())
    t.record(Signal.RESPONSES, "policy-rule", Priority.CRITICAL, namespace="a", pod="p")
    assert counts(t, RateScope.POD) == {}
    assert [e.count for e in t.entries(RateScope.POD, Signal.RESPONSES, 60)] == [1]


def test_objects_unseen_for_the_ttl_are_swept() -> None:
    clock = FakeClock()
    t = tracker(clock, ttl=600)
    t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="a", pod="old")
    clock.advance(500)
    t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="a", pod="new")
    clock.advance(200)
    assert t.sweep() == 1  # the pod "old"; the namespace was seen 200 s ago
    assert t.tracked(RateScope.POD) == 1
    assert t.tracked(RateScope.NAMESPACE) == 1
    assert t.complete


def test_past_the_cap_the_least_recently_seen_object_goes_and_snapshots_say_so() -> None:
    clock = FakeClock()
    t = tracker(clock, cap=3)
    for pod in ("p1", "p2", "p3"):
        t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="a", pod=pod)
        clock.advance(1)
    assert len(t) == 3  # namespace a, p1 was dropped for p3
    assert counts(t, RateScope.POD) == {"p2": 1, "p3": 1}
    assert t.evicted_for_cap == 1
    assert not t.complete
    clock.advance(301)
    assert t.complete  # the dropped counts would have left every window by now


def test_alerts_without_a_namespace_are_not_tracked() -> None:
    t = tracker(FakeClock())
    t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace=None, pod=None)
    assert len(t) == 0


def test_a_hot_pod_keeps_a_bounded_number_of_buckets() -> None:
    clock = FakeClock()
    t = tracker(clock)
    for _ in range(5000):
        t.record(Signal.ALERTS, "r", Priority.NOTICE, namespace="a", pod="hot")
        clock.advance(1)
    obj = t._objects[(RateScope.POD, "a", "Pod", "hot")]
    (flat,) = obj.series.values()
    assert len(flat) <= 2 * (300 // 5 + 1)
    # 5-second buckets: the window covers the last 295 to 300 seconds.
    assert 295 <= counts(t, RateScope.POD, 300)["hot"] <= 300
