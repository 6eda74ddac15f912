"""The assembled app: alerts flow from ingest through the queue to decisions; ops endpoints report it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from teflon.common.wire import RateSnapshot

from .conftest import REAL_ALERTS, StartApp, load, make_settings
from .fakes import FakeActions

SHELL = load(REAL_ALERTS[0].parent / "11-terminal-shell-2024-thread-fields-tags.json")
POD = ("default", "cncf-55696bc998-9j9zk")

ENFORCE_LABEL = """
mode: enforce
rules:
  - name: shells
    match: {tags: [shell]}
    actions: [{type: label}]
"""


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` for up to five seconds (the policy reload loop runs every 50 ms here)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_an_accepted_alert_is_acted_on_by_a_worker(start_app: StartApp, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ENFORCE_LABEL)
    fake = FakeActions()
    fake.replicaset("default", "cncf-55696bc998")
    fake.add_pod(*POD, node="falco-htpzn", owner=("apps/v1", "ReplicaSet", "cncf-55696bc998"))
    app = await start_app(make_settings(policy_file=policy), actions=fake)
    resp = await app.ingest.post("/v1/falco", json=SHELL)
    assert resp.status_code == 202
    await app.drain()
    assert fake.actions_called() == ["label"]
    assert (
        app.metric(
            "teflon_webhook_actions_total",
            {"action": "label", "result": "applied", "mode": "enforce", "namespace": "default"},
        )
        == 1
    )
    assert app.metric("teflon_webhook_action_latency_seconds_count", {"action": "label"}) == 1


async def test_metrics_report_alerts_and_the_namespace_label_can_be_switched_off(start_app: StartApp) -> None:
    app = await start_app(make_settings(metrics_namespace_label=False))
    await app.ingest.post("/v1/falco", json=SHELL)
    await app.drain()
    text = (await app.ops.get("/metrics")).text
    labels = 'namespace="",priority="Notice",rule="Terminal shell in container",source="syscall"'
    assert f"teflon_webhook_alerts_total{{{labels}}} 1.0" in text
    assert "cncf-55696bc998-9j9zk" not in text  # never a pod name as a label
    assert "teflon_webhook_queue_depth 0.0" in text
    assert 'teflon_webhook_rate_tracked_objects{scope="pod"} 1.0' in text
    assert "http_requests_total" in text  # the instrumentator's HTTP metrics for ingest


async def test_the_rate_api_answers_with_a_rate_snapshot(start_app: StartApp) -> None:
    app = await start_app()
    for _ in range(3):
        await app.ingest.post("/v1/falco", json=SHELL)
    await app.drain()
    resp = await app.ops.get(
        "/v1/rates", params={"scope": "pod", "window": 300, "namespace": "default", "minPriority": "Notice"}
    )
    assert resp.status_code == 200
    snap = RateSnapshot.model_validate(resp.json())
    assert snap.window_seconds == 300
    assert snap.replica == "teflon-webhook-test"
    assert snap.complete
    assert [(e.kind, e.name, e.count) for e in snap.entries] == [("Pod", POD[1], 3)]
    filtered = await app.ops.get("/v1/rates", params={"scope": "pod", "minPriority": "Critical"})
    assert filtered.json()["entries"] == []


async def test_the_rate_api_refuses_unknown_windows_scopes_and_priorities(start_app: StartApp) -> None:
    app = await start_app()
    for params in (
        {"scope": "pod", "window": 120},
        {"scope": "cluster"},
        {"scope": "pod", "minPriority": "Loud"},
        {},
    ):
        resp = await app.ops.get("/v1/rates", params=params)
        assert resp.status_code == 422, params


async def test_readiness_needs_a_policy_and_in_enforce_mode_the_kubernetes_api(
    start_app: StartApp, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: enforce")
    fake = FakeActions()
    app = await start_app(make_settings(policy_file=policy), actions=fake)
    assert (await app.ops.get("/readyz")).status_code == 200
    fake.is_reachable = False
    resp = await app.ops.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["kubernetes"] is False
    assert (await app.ops.get("/healthz")).status_code == 200


async def test_dry_run_is_ready_without_any_cluster(start_app: StartApp) -> None:
    app = await start_app()
    resp = await app.ops.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"ready": True, "checks": {"policy": True, "accepting": True}}


async def test_an_unreadable_policy_at_startup_is_not_ready_and_counts_an_error(
    start_app: StartApp, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: [")
    app = await start_app(make_settings(policy_file=policy))
    assert (await app.ops.get("/readyz")).status_code == 503
    assert app.metric("teflon_webhook_policy_reload_errors_total") == 1
    assert app.metric("teflon_webhook_policy_loaded") == 0
    resp = await app.ingest.post("/v1/falco", json=SHELL)  # alerts are still received and counted
    assert resp.status_code == 202


async def test_a_policy_change_on_disk_is_picked_up_and_a_bad_one_is_ignored(
    start_app: StartApp, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: dryRun")
    app = await start_app(make_settings(policy_file=policy))
    service = app.app.service
    policy.write_text("mode: enforce\n# a new version of the file\n")
    await eventually(lambda: app.metric("teflon_webhook_policy_enforce") == 1)
    policy.write_text("mode: {{ broken")
    await eventually(lambda: app.metric("teflon_webhook_policy_reload_errors_total") == 1)
    assert service.policy() is not None
    assert service.policy().mode.value == "enforce"


async def test_stopping_drains_queued_alerts_and_refuses_new_ones(start_app: StartApp) -> None:
    fake = FakeActions()
    app = await start_app(make_settings(workers=1), actions=fake)
    for _ in range(20):
        await app.ingest.post("/v1/falco", json=SHELL)
    await app.app.service.stop()
    assert app.app.service.queue.qsize() == 0
    assert fake.closed
    resp = await app.ingest.post("/v1/falco", json=SHELL)
    assert resp.status_code == 503
    assert resp.json()["error"] == "shutting_down"
    app.app.service._tasks = []  # already stopped; the fixture's stop() must find nothing left


async def test_made_up_rule_names_cannot_grow_the_metrics_without_bound(start_app: StartApp) -> None:
    app = await start_app()
    app.app.service.telemetry._rules.limit = 3
    batch = [{**SHELL, "rule": f"rule-{i}"} for i in range(10)]
    assert (await app.ingest.post("/v1/falco", json=batch)).json()["accepted"] == 10
    await app.drain()
    text = (await app.ops.get("/metrics")).text
    counted = [line for line in text.splitlines() if line.startswith("teflon_webhook_alerts_total{")]
    assert len(counted) == 4
    assert any('rule="_other"' in line and line.endswith(" 7.0") for line in counted)
