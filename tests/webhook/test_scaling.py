"""The scaling guardrail: acted-on pods stop feeding the rates; held workloads get no metric to scale on.

The last tests run the webhook's rate API and the metrics server's teflon backend together (over ASGI),
so what the HPA would see for a held workload is asserted end to end: an error, or a capped value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from teflon.common.wire import RateScope, RatesQuery, Signal
from teflon.metrics.backends import BackendError, Target
from teflon.metrics.backends.teflon import StaticReplicas, TeflonRates
from teflon.metrics.config import BUILTIN_METRICS, TeflonBackend
from teflon.metrics.resources import RESOURCE_TYPES
from teflon.metrics.telemetry import Telemetry as MetricsTelemetry
from teflon.webhook.actions import ISOLATE_LABEL
from teflon.webhook.policy import Guardrail

from .conftest import StartApp, make_settings
from .fakes import FakeActions
from .test_responder import alert, policy, rig

PER_MINUTE = BUILTIN_METRICS[0]
DEPLOYMENTS, PODS = RESOURCE_TYPES["deployments.apps"], RESOURCE_TYPES["pods"]


def cluster() -> FakeActions:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    fake.add_pod("shop", "web-1")
    fake.add_pod("shop", "web-2")
    return fake


def counts(r: Any, scope: RateScope, name: str) -> int:
    return sum(e.count for e in r.rates.entries(scope, Signal.ALERTS, 60, name=name))


def workload_query(**kw: Any) -> RatesQuery:
    return RatesQuery(scope=RateScope.WORKLOAD, namespace="shop", **kw)


DELETE = [{"type": "delete"}]


async def test_after_an_enforced_response_the_pods_alerts_no_longer_count_and_its_workload_is_held() -> None:
    fake = cluster()
    r = rig(policy(actions=DELETE, minHealthyReplicas=0), fake)
    await r.send(alert(pod="web-1"))  # counted, then acted on
    assert fake.actions_called() == ["delete"]
    for _ in range(5):
        await r.send(alert(pod="web-1"))
    await r.send(alert(pod="web-2", tags=["other"]))  # matches no rule: counted
    assert counts(r, RateScope.POD, "web-1") == 1
    assert counts(r, RateScope.WORKLOAD, "web") == 2
    cfg = r.current.guardrail
    held = r.responder.scaling.held(cfg, workload_query())
    assert [(h.kind, h.name, h.cap_per_minute) for h in held] == [("Deployment", "web", None)]
    pods = r.responder.scaling.held(cfg, RatesQuery(scope=RateScope.POD, namespace="shop"))
    assert [(h.kind, h.name) for h in pods] == [("Pod", "web-1")]
    assert r.responder.scaling.held(cfg, RatesQuery(scope=RateScope.NAMESPACE)) == []
    assert r.responder.scaling.held(cfg, workload_query(name="other")) == []
    # Held for holdMinutes, then not: the next alerts count again.
    r.responder.scaling._clock = lambda: held[0].until.timestamp() + 1
    assert r.responder.scaling.held(cfg, workload_query()) == []
    assert not r.responder.scaling.muted(cfg, "shop", "web-1")


async def test_with_the_guardrail_off_every_alert_counts_and_nothing_is_held() -> None:
    fake = cluster()
    r = rig(policy(actions=DELETE, minHealthyReplicas=0, guardrail={"enabled": False}), fake)
    for _ in range(4):
        await r.send(alert(pod="web-1"))
    assert counts(r, RateScope.POD, "web-1") == 4
    assert r.responder.scaling.held(r.current.guardrail, workload_query()) == []


async def test_dry_run_holds_nothing_and_mutes_nothing() -> None:
    r = rig(policy(mode="dryRun", actions=DELETE), cluster())
    for _ in range(3):
        await r.send(alert(pod="web-1"))
    assert counts(r, RateScope.POD, "web-1") == 3
    assert r.responder.scaling.held(r.current.guardrail, workload_query()) == []


async def test_a_pod_carrying_teflons_isolation_label_is_muted_on_a_replica_that_did_not_act() -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    fake.add_pod("shop", "web-1", labels={ISOLATE_LABEL: "u"})
    r = rig(policy(actions=[{"type": "label"}]), fake)
    await r.send(alert(pod="web-1"))  # its marks are read before it is counted: never counted
    await r.send(alert(pod="web-1"))
    assert counts(r, RateScope.POD, "web-1") == 0
    assert counts(r, RateScope.NAMESPACE, "shop") == 0


async def test_cap_mode_caps_at_the_rate_before_the_response() -> None:
    fake = cluster()
    r = rig(policy(actions=DELETE, minHealthyReplicas=0, guardrail={"hold": "cap"}), fake)
    rates_clock = [1_000_000.0]
    r.rates._clock = lambda: rates_clock[0]
    for _ in range(8):  # eight alerts about web-2, two minutes before the attack (no rule matches)
        await r.send(alert(pod="web-2", tags=["other"]))
    rates_clock[0] += 120
    await r.send(alert(pod="web-1"))  # the attack: acted on
    [held] = r.responder.scaling.held(r.current.guardrail, workload_query())
    assert held.cap_per_minute == pytest.approx(8 / 4)  # eight alerts over the four minutes before


# --- the rate API and the metrics server's backend together ---


def _policy_file(tmp_path: Path, **extra: Any) -> Path:
    doc = {
        "mode": "enforce",
        "minHealthyReplicas": 0,
        "rules": [{"name": "shells", "match": {"tags": ["shell"]}, "actions": DELETE}],
        **extra,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _wire(alert_doc: Any) -> dict[str, Any]:
    return {
        "rule": alert_doc.rule,
        "priority": alert_doc.priority.label,
        "source": "syscall",
        "tags": list(alert_doc.tags),
        "hostname": alert_doc.hostname,
        "output_fields": {"k8s.ns.name": alert_doc.namespace, "k8s.pod.name": alert_doc.pod},
    }


async def _served(start_app: StartApp, tmp_path: Path, **extra: Any) -> tuple[Any, TeflonRates]:
    running = await start_app(make_settings(policy_file=_policy_file(tmp_path, **extra)), actions=cluster())
    batch = [_wire(alert(pod="web-2", tags=["other"]))] * 6 + [_wire(alert(pod="web-1"))]
    reply = await running.ingest.post("/v1/falco", json=batch)
    assert reply.status_code == 202
    await running.drain()
    backend = TeflonRates(
        TeflonBackend(service="teflon-webhook", namespace="teflon"),
        StaticReplicas(["http://ops"]),
        MetricsTelemetry(CollectorRegistry()),
        http=running.ops,
    )
    return running, backend


async def test_the_metrics_api_answers_an_error_for_a_held_workload_so_its_hpa_holds(
    start_app: StartApp, tmp_path: Path
) -> None:
    _running, backend = await _served(start_app, tmp_path)
    with pytest.raises(BackendError, match=r"Deployment shop/web is held until .*guardrail"):
        await backend.fetch(PER_MINUTE, Target(DEPLOYMENTS, "shop", ("web",)))
    with pytest.raises(BackendError, match="Pod shop/web-1 is held"):
        await backend.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1", "web-2")))
    # A pod that was not acted on, queried alone, still has its rate.
    assert await backend.fetch(PER_MINUTE, Target(PODS, "shop", ("web-2",))) == {"web-2": 6.0}


async def test_with_the_guardrail_off_the_workload_scales_on_its_alert_rate_as_before(
    start_app: StartApp, tmp_path: Path
) -> None:
    _running, backend = await _served(start_app, tmp_path, guardrail={"enabled": False})
    assert await backend.fetch(PER_MINUTE, Target(DEPLOYMENTS, "shop", ("web",))) == {"web": 7.0}


async def test_cap_mode_serves_the_capped_value(start_app: StartApp, tmp_path: Path) -> None:
    _running, backend = await _served(start_app, tmp_path, guardrail={"hold": "cap"})
    # All of web's alerts came within the last minute: the rate before the response was zero.
    assert await backend.fetch(PER_MINUTE, Target(DEPLOYMENTS, "shop", ("web",))) == {"web": 0.0}


def test_the_guardrail_defaults_are_on_error_and_a_quarter_hour() -> None:
    assert Guardrail() == Guardrail(enabled=True, hold_minutes=15, hold="error")
