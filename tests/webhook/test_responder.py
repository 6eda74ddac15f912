"""The responder's decisions against a fake cluster: protections, limits, dedupe, the record it leaves."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from teflon.common.wire import RateScope, Signal
from teflon.webhook.actions import ActionResult, Outcome
from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Policy
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry
from tests.harness.falco import alert_doc

from .clock import FakeClock
from .fakes import FakeActions

ALL_ACTIONS = [
    {"type": "label", "labels": {"teflon.io/quarantined": "true"}},
    {"type": "isolate"},
    {"type": "evict"},
    {"type": "delete", "gracePeriodSeconds": 10},
]


def policy(mode: str = "enforce", actions: list[dict[str, Any]] | None = None, **extra: Any) -> Policy:
    doc: dict[str, Any] = {
        "mode": mode,
        "rules": [{"name": "shells", "match": {"tags": ["shell"]}, "actions": actions or ALL_ACTIONS}],
    }
    doc.update(extra)
    return Policy.model_validate(doc)


def alert(namespace: str = "shop", pod: str = "web-1", **overrides: Any) -> Alert:
    overrides.setdefault("tags", ["shell"])
    doc = alert_doc(namespace, pod, **overrides)
    return parse_one(doc, received=datetime.now(UTC))


def actions_total(registry: CollectorRegistry, **labels: str) -> float:
    """``teflon_webhook_actions_total`` summed over the series whose labels match ``labels``."""
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "teflon_webhook_actions"
        for s in m.samples
        if s.name == "teflon_webhook_actions_total" and all(s.labels.get(k) == v for k, v in labels.items())
    )


def skips_total(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("teflon_webhook_skips_total", {"reason": reason}) or 0.0


@dataclass
class Rig:
    responder: Responder
    fake: FakeActions | None
    registry: CollectorRegistry
    rates: RateTracker
    clock: FakeClock
    current: Policy

    async def send(self, a: Alert) -> None:
        await self.responder.handle(a, self.clock())

    def actions(self, **labels: str) -> float:
        return actions_total(self.registry, **labels)

    def skips(self, reason: str) -> float:
        return skips_total(self.registry, reason)


def rig(current: Policy, fake: FakeActions | None) -> Rig:
    registry = CollectorRegistry()
    clock = FakeClock()
    rates = RateTracker(max_tracked=1000, ttl_seconds=900)
    if fake is not None:
        fake.leases.clock = clock  # claims expire on the same clock as the in-memory dedupe
    responder = Responder(
        policy=lambda: current,
        own_namespace="teflon",
        telemetry=Telemetry(registry),
        rates=rates,
        actions=fake,
        clock=clock,
    )
    return Rig(responder, fake, registry, rates, clock, current)


@pytest.fixture
def fake_cluster() -> FakeActions:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    fake.add_pod("shop", "web-1")
    return fake


async def test_enforce_applies_every_action_in_order_with_the_pods_uid(fake_cluster: FakeActions) -> None:
    r = rig(policy(), fake_cluster)
    await r.send(alert())
    uid = fake_cluster.pods[("shop", "web-1")]["metadata"]["uid"]
    assert fake_cluster.actions_called() == ["label", "isolate", "evict", "delete"]
    assert {ref.uid for _name, ref, _arg in fake_cluster.calls} == {uid}
    assert fake_cluster.calls[0][2] == {"teflon.io/quarantined": "true"}
    assert fake_cluster.calls[3][2] == 10
    assert r.actions(result="applied", mode="enforce", namespace="shop") == 4
    assert [e["reason"] for e in fake_cluster.events] == ["TeflonApplied"] * 4
    assert "Terminal shell in container" in fake_cluster.events[0]["note"]


async def test_dry_run_changes_nothing_but_records_every_decision(
    fake_cluster: FakeActions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    r = rig(policy(mode="dryRun"), fake_cluster)
    await r.send(alert())
    assert fake_cluster.calls == []
    assert r.actions(result="dry_run", mode="dryRun") == 4
    assert [(e["action"], e["reason"]) for e in fake_cluster.events] == [
        ("Label", "TeflonDryRun"),
        ("Isolate", "TeflonDryRun"),
        ("Evict", "TeflonDryRun"),
        ("Delete", "TeflonDryRun"),
    ]
    lines = [rec for rec in caplog.records if rec.getMessage() == "response decided"]
    assert len(lines) == 4
    fields = {
        k: getattr(lines[2], k)
        for k in ("namespace", "pod", "rule", "priority", "action", "result", "dry_run")
    }
    assert fields == {
        "namespace": "shop",
        "pod": "web-1",
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "action": "evict",
        "result": "dry_run",
        "dry_run": True,
    }


async def test_a_rule_in_dry_run_stays_dry_while_the_global_mode_enforces(fake_cluster: FakeActions) -> None:
    current = Policy.model_validate(
        {"mode": "enforce", "rules": [{"name": "r", "mode": "dryRun", "actions": [{"type": "delete"}]}]}
    )
    r = rig(current, fake_cluster)
    await r.send(alert())
    assert fake_cluster.calls == []
    assert r.actions(action="delete", result="dry_run") == 1


@pytest.mark.parametrize("namespace", ["kube-system", "teflon", "kube-public"])
async def test_pods_in_protected_namespaces_are_never_touched(
    fake_cluster: FakeActions, namespace: str
) -> None:
    fake_cluster.add_pod(namespace, "web-1")
    r = rig(policy(), fake_cluster)
    await r.send(alert(namespace=namespace))
    assert fake_cluster.calls == []
    assert fake_cluster.pod_gets == 1  # only the rate lookup; the decision needed no pod
    assert r.skips("protected_namespace") == 4
    assert r.actions(result="skipped", namespace=namespace) == 4


PROTECTIONS = [
    # (description, pod kwargs, policy extra, alert overrides, skip reason)
    ("opt-out label", {"labels": {"teflon.io/ignore": "true"}}, {}, {}, "opted_out"),
    ("custom opt-out label", {"labels": {"sec/skip": "true"}}, {"optOutLabel": "sec/skip"}, {}, "opted_out"),
    ("DaemonSet pod", {"owner": ("apps/v1", "DaemonSet", "agent")}, {}, {}, "daemonset_pod"),
    ("mirror pod", {"annotations": {"kubernetes.io/config.mirror": "abc"}}, {}, {}, "static_pod"),
    ("static pod owned by its node", {"owner": ("v1", "Node", "node-1")}, {}, {}, "static_pod"),
    ("bare pod", {"owner": None}, {}, {}, "bare_pod"),
    ("pod on another node", {"node": "node-9"}, {}, {}, "node_mismatch"),
    ("alert without a hostname", {}, {}, {"hostname": None}, "node_mismatch"),
    (
        "pod replaced since the alert",
        {"uid": "new-uid"},
        {},
        {"fields": {"k8s.pod.uid": "old-uid"}},
        "pod_replaced",
    ),
]


@pytest.mark.parametrize(
    ("desc", "pod_kw", "extra", "overrides", "reason"), PROTECTIONS, ids=[p[0] for p in PROTECTIONS]
)
async def test_protections_no_rule_can_override(
    desc: str, pod_kw: dict[str, Any], extra: dict[str, Any], overrides: dict[str, Any], reason: str
) -> None:
    fake = FakeActions()
    fake.add_pod("shop", "web-1", **pod_kw)
    r = rig(policy(**extra), fake)
    await r.send(alert(**overrides))
    await r.send(alert(**overrides))
    assert fake.calls == []
    assert r.skips(reason) == 8
    # One Event per pod and reason per dedupe window says why the pod was left alone.
    assert [(e["action"], e["reason"]) for e in fake.events] == [("Skip", "TeflonSkipped")]
    assert reason in fake.events[0]["note"]


async def test_a_node_mismatch_is_counted_as_suspicious() -> None:
    fake = FakeActions()
    fake.add_pod("shop", "web-1", node="node-9")
    r = rig(policy(), fake)
    await r.send(alert())
    assert r.registry.get_sample_value("teflon_webhook_node_mismatch_total") == 1


async def test_the_node_check_can_be_switched_off_and_bare_pods_allowed() -> None:
    fake = FakeActions()
    fake.add_pod("shop", "web-1", node="node-9", owner=None)
    r = rig(policy(actions=[{"type": "label"}], nodeCheck=False, allowBarePods=True), fake)
    await r.send(alert())
    assert fake.actions_called() == ["label"]


async def test_a_pod_that_no_longer_exists_is_skipped() -> None:
    r = rig(policy(), FakeActions())
    await r.send(alert())
    assert r.skips("pod_not_found") == 4


async def test_eviction_and_deletion_wait_for_enough_healthy_replicas(fake_cluster: FakeActions) -> None:
    fake_cluster.replicaset("shop", "web-5d8f", ready=1, replicas=1)
    r = rig(policy(), fake_cluster)
    await r.send(alert())
    assert fake_cluster.actions_called() == ["label", "isolate"]
    assert r.skips("min_healthy_replicas") == 1  # evict skipped; the rest of the list stops there
    assert "1 ready pods; 0 would be left" in fake_cluster.events[-1]["note"]


async def test_repeated_alerts_act_once_per_pod_and_action_within_the_window(
    fake_cluster: FakeActions,
) -> None:
    r = rig(policy(actions=[{"type": "label"}]), fake_cluster)
    for _ in range(5):
        await r.send(alert())
    assert fake_cluster.actions_called() == ["label"]
    assert r.skips("deduped") == 4
    r.clock.advance(301)
    await r.send(alert())
    assert fake_cluster.actions_called() == ["label", "label"]


async def test_a_blocked_eviction_stops_the_rest_and_is_retried_by_a_later_alert(
    fake_cluster: FakeActions,
) -> None:
    fake_cluster.outcomes["evict"] = ActionResult(
        Outcome.BLOCKED, "Cannot evict pod as it would violate the pod's disruption budget."
    )
    r = rig(policy(actions=[{"type": "evict"}, {"type": "delete"}]), fake_cluster)
    await r.send(alert())
    assert fake_cluster.actions_called() == ["evict"]
    assert r.actions(action="evict", result="blocked") == 1
    assert fake_cluster.events[-1]["reason"] == "TeflonBlocked"
    await r.send(alert())
    assert fake_cluster.actions_called() == ["evict", "evict"]


@pytest.mark.parametrize("outcome", [Outcome.GONE, Outcome.REPLACED, Outcome.FAILED])
async def test_a_pod_gone_replaced_or_failed_stops_the_rest_of_the_list(
    fake_cluster: FakeActions, outcome: Outcome
) -> None:
    fake_cluster.outcomes["label"] = ActionResult(outcome, "x")
    r = rig(policy(), fake_cluster)
    await r.send(alert())
    assert fake_cluster.actions_called() == ["label"]
    assert r.actions(action="label", result=outcome.value) == 1


async def test_the_namespace_budget_throttles_actions_beyond_its_burst() -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    for i in range(4):
        fake.add_pod("shop", f"web-{i}")
    current = policy(
        actions=[{"type": "label"}],
        budgets={"global": {"perMinute": 60, "burst": 10}, "perNamespace": {"perMinute": 1, "burst": 2}},
    )
    r = rig(current, fake)
    for i in range(4):
        await r.send(alert(pod=f"web-{i}"))
    assert len(fake.calls) == 2
    assert r.skips("budget") == 2


async def test_the_circuit_breaker_stops_all_enforcement_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    for i in range(5):
        fake.add_pod("shop", f"web-{i}")
    current = policy(
        actions=[{"type": "label"}],
        circuitBreaker={"maxActions": 3, "windowSeconds": 60, "cooldownSeconds": 120},
    )
    r = rig(current, fake)
    for i in range(5):
        await r.send(alert(pod=f"web-{i}"))
    assert len(fake.calls) == 3
    assert r.skips("circuit_open") == 2
    assert r.registry.get_sample_value("teflon_webhook_circuit_breaker_open") == 1
    assert r.responder.circuit_open
    assert any(e["reason"] == "TeflonCircuitOpen" for e in fake.events)
    assert any(rec.getMessage().startswith("circuit breaker open") for rec in caplog.records)
    r.clock.advance(121)
    await r.send(alert(pod="web-4"))
    assert len(fake.calls) == 4


async def test_without_a_cluster_dry_run_decisions_are_still_made_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    r = rig(policy(mode="dryRun", actions=[{"type": "delete"}]), None)
    await r.send(alert())
    assert r.actions(action="delete", result="dry_run") == 1
    (line,) = [rec for rec in caplog.records if rec.getMessage() == "response decided"]
    assert "no cluster" in line.detail  # type: ignore[attr-defined]


async def test_without_a_cluster_enforce_mode_acts_on_nothing() -> None:
    r = rig(policy(), None)
    await r.send(alert())
    assert r.skips("no_cluster") == 4


async def test_internal_alerts_are_never_acted_on(fake_cluster: FakeActions) -> None:
    r = rig(
        Policy.model_validate(
            {"mode": "enforce", "rules": [{"name": "all", "actions": [{"type": "delete"}]}]}
        ),
        fake_cluster,
    )
    await r.send(alert(source="internal"))
    assert fake_cluster.calls == []
    assert len(r.rates) == 0


async def test_a_pod_lookup_failure_skips_the_response_without_raising(fake_cluster: FakeActions) -> None:
    r = rig(policy(), fake_cluster)
    fake_cluster.fail_pod_get = True
    await r.send(alert())
    assert fake_cluster.calls == []
    assert r.skips("lookup_failed") == 4


async def test_alerts_and_responses_are_counted_against_pod_workload_and_namespace(
    fake_cluster: FakeActions,
) -> None:
    # Without the guardrail: with it, the alert after the response would not count (test_scaling).
    r = rig(policy(actions=[{"type": "label"}], guardrail={"enabled": False}), fake_cluster)
    await r.send(alert())
    await r.send(alert())
    workloads = r.rates.entries(RateScope.WORKLOAD, Signal.ALERTS, 60)
    assert [(e.kind, e.name, e.count) for e in workloads] == [("Deployment", "web", 2)]
    responses = r.rates.entries(RateScope.POD, Signal.RESPONSES, 60)
    assert [(e.name, e.count) for e in responses] == [("web-1", 1)]


async def test_the_pod_selector_picks_the_rule() -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    fake.add_pod("shop", "pci-1", labels={"pci": "true"})
    fake.add_pod("shop", "web-1")
    current = Policy.model_validate(
        {
            "mode": "enforce",
            "rules": [
                {
                    "name": "pci",
                    "match": {"podSelector": {"matchLabels": {"pci": "true"}}},
                    "actions": [{"type": "delete"}],
                },
                {"name": "rest", "actions": [{"type": "label"}]},
            ],
        }
    )
    r = rig(current, fake)
    await r.send(alert(pod="pci-1"))
    await r.send(alert(pod="web-1"))
    assert [(n, ref.name) for n, ref, _ in fake.calls] == [("delete", "pci-1"), ("label", "web-1")]


async def test_concurrent_workers_cannot_slip_past_the_circuit_breaker() -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    for i in range(6):
        fake.add_pod("shop", f"web-{i}")
    slow = asyncio.Event()
    label = fake.label_pod

    # every call is in flight while the others are decided
    async def slow_label(pod: PodRef, labels: dict[str, str], *, has_labels: bool = False) -> ActionResult:
        await slow.wait()
        return await label(pod, labels, has_labels=has_labels)

    fake.label_pod = slow_label  # type: ignore[method-assign]
    current = policy(
        actions=[{"type": "label"}],
        circuitBreaker={"maxActions": 3, "windowSeconds": 60, "cooldownSeconds": 120},
    )
    r = rig(current, fake)
    tasks = [asyncio.create_task(r.send(alert(pod=f"web-{i}"))) for i in range(6)]
    await asyncio.sleep(0.05)
    slow.set()
    await asyncio.gather(*tasks)
    assert len(fake.calls) == 3
    assert r.skips("circuit_open") == 3
