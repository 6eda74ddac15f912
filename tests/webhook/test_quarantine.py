"""Quarantine: the plan per controller, the detaching patch, the record, and the keeper's sweep."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from teflon.webhook.actions import ActionResult, Outcome, perform
from teflon.webhook.claims import claim_name
from teflon.webhook.keeper import sweep_quarantines
from teflon.webhook.objects import OwnerRef, PodRef
from teflon.webhook.policy import QuarantineAction, parse_policy
from teflon.webhook.quarantine import (
    AT,
    EXPIRES,
    EXTEND_REQUEST,
    QUARANTINE_LABEL,
    RELEASE_REQUEST,
    REMOVED_LABELS,
    Due,
    Plan,
    QuarantineOrder,
    Record,
    detach_patch,
    due,
    plan_for,
    record_lease,
    record_name,
    selector_keys,
    stamp,
)

from .conftest import StartApp, make_settings
from .fakes import FakeActions
from .test_responder import alert, policy, rig

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RS = OwnerRef("apps/v1", "ReplicaSet", "web-5d8f", controller=True)
STS = OwnerRef("apps/v1", "StatefulSet", "db", controller=True)
Q = QuarantineAction.model_validate({"type": "quarantine", "ttlSeconds": 600})


def order(pod: PodRef, plan: Plan = Plan.REPLACE, ttl: int = 600, at: datetime = T0) -> QuarantineOrder:
    return QuarantineOrder(
        pod=pod,
        plan=plan,
        controller=RS,
        rule="shells",
        alert_rule="Terminal shell in container",
        alert_priority="Critical",
        alert_output="A shell was spawned",
        at=at,
        ttl_seconds=ttl,
        record_namespace="teflon",
        holder="teflon-webhook-0",
    )


@pytest.mark.parametrize(
    ("controller", "fallback", "plan"),
    [
        (RS, "isolate", Plan.REPLACE),
        (STS, "isolate", Plan.ISOLATE),
        (STS, "delete", Plan.DELETE),
        (OwnerRef("batch/v1", "Job", "j", controller=True), "delete", Plan.ISOLATE),
        (None, "delete", Plan.ISOLATE),
    ],
)
def test_the_plan_follows_the_controller(controller: OwnerRef | None, fallback: str, plan: Plan) -> None:
    action = QuarantineAction.model_validate({"type": "quarantine", "statefulSetFallback": fallback})
    got, why = plan_for(controller, action)
    assert got is plan
    assert (why == "") == (plan is Plan.REPLACE)
    if controller is STS:
        assert "StatefulSet pod cannot be replaced" in why


def test_policy_bounds_the_ttl_and_names_the_fallback() -> None:
    with pytest.raises(Exception, match="ttlSeconds"):
        parse_policy("rules: [{name: q, actions: [{type: quarantine, ttlSeconds: 10}]}]")
    with pytest.raises(Exception, match="statefulSetFallback"):
        parse_policy("rules: [{name: q, actions: [{type: quarantine, statefulSetFallback: evict}]}]")
    p = parse_policy("rules: [{name: q, actions: [{type: quarantine}]}]")
    assert p.rules[0].actions[0] == QuarantineAction.model_validate(
        {"type": "quarantine", "ttlSeconds": 86400}
    )


def test_selector_keys_take_match_labels_and_requiring_expressions() -> None:
    owner = {
        "spec": {
            "selector": {
                "matchLabels": {"app": "web", "pod-template-hash": "5d8f"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            }
        }
    }
    assert selector_keys(owner) == ["app", "pod-template-hash", "tier"]
    assert selector_keys(None) == []
    assert selector_keys({"spec": {}}) == []


def test_the_detach_patch_tests_the_uid_removes_the_selector_labels_and_records_why() -> None:
    ref = PodRef("shop", "web-1", "u-1")
    pod = {"metadata": {"uid": "u-1", "labels": {"app": "web", "pod-template-hash": "5d8f", "team": "a"}}}
    ops, removed = detach_patch(pod, order(ref), ["app", "pod-template-hash", "absent"])
    assert ops[0] == {"op": "test", "path": "/metadata/uid", "value": "u-1"}
    assert removed == {"app": "web", "pod-template-hash": "5d8f"}
    removes = [o["path"] for o in ops if o["op"] == "remove"]
    assert removes == ["/metadata/labels/app", "/metadata/labels/pod-template-hash"]
    adds = {o["path"]: o["value"] for o in ops if o["op"] == "add"}
    assert adds["/metadata/labels/teflon.io~1quarantined"] == "true"
    assert adds["/metadata/annotations"] == {}
    assert adds["/metadata/annotations/teflon.io~1quarantined-at"] == "2026-12-04T12:00:00Z"
    assert adds["/metadata/annotations/teflon.io~1quarantine-expires"] == "2026-12-04T12:10:00Z"
    assert json.loads(adds["/metadata/annotations/teflon.io~1quarantine-removed-labels"]) == removed
    assert "Terminal shell" in adds["/metadata/annotations/teflon.io~1quarantine-reason"]


def _record(ref: PodRef, notes: dict[str, str] | None = None, *, at: datetime = T0) -> dict[str, Any]:
    lease = record_lease(order(ref, at=at), namespace="teflon", holder="h")
    lease["metadata"]["resourceVersion"] = "1"
    lease["metadata"]["annotations"].update(notes or {})
    return lease


def test_a_record_reads_back_and_falls_due_at_its_ttl_or_on_request() -> None:
    ref = PodRef("shop", "web-1", "u-1")
    rec = Record.parse(_record(ref))
    assert rec is not None
    assert rec.pod == ref
    assert due(rec, T0 + timedelta(seconds=599)) is Due.KEEP
    assert due(rec, T0 + timedelta(seconds=600)) is Due.EXPIRE
    released = Record.parse(_record(ref, {RELEASE_REQUEST: "true"}))
    assert released is not None
    assert due(released, T0) is Due.RELEASE
    extend = Record.parse(_record(ref, {EXTEND_REQUEST: "3600"}))
    assert extend is not None
    assert due(extend, T0) is Due.EXTEND
    assert extend.extend_seconds == 3600
    for bad in ("soon", "-5", "0"):
        rejected = Record.parse(_record(ref, {EXTEND_REQUEST: bad}))
        assert rejected is not None
        assert due(rejected, T0) is Due.REJECT


def test_a_record_is_never_named_as_the_quarantine_claim_of_the_same_pod() -> None:
    for uid in ("6d99892e-71ce-436f-9389-7e38f236255f", "u-1"):
        assert record_name(uid) != claim_name(uid, "quarantine")


def test_a_lease_that_is_not_a_well_formed_record_is_ignored() -> None:
    ref = PodRef("shop", "web-1", "u-1")
    lease = _record(ref)
    lease["metadata"]["name"] = "teflon-quarantined-other-uid"  # the name must be the UID's
    assert Record.parse(lease) is None
    lease = _record(ref)
    del lease["metadata"]["labels"]["teflon.io/quarantine"]
    assert Record.parse(lease) is None


# --- the responder ---


def _quarantine_policy(**action: Any) -> Any:
    return policy(actions=[{"type": "quarantine", **action}], minHealthyReplicas=0)


async def test_the_responder_quarantines_a_replicaset_pod_with_the_cause_and_expiry() -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    pod = fake.add_pod("shop", "web-1")
    r = rig(_quarantine_policy(ttlSeconds=900), fake)
    await r.send(alert())
    [(name, ref, got)] = fake.calls
    assert name == "quarantine"
    assert ref.uid == pod["metadata"]["uid"]
    assert isinstance(got, QuarantineOrder)
    assert got.plan is Plan.REPLACE
    assert got.ttl_seconds == 900
    assert got.record_namespace == "teflon"
    assert got.alert_rule == "Terminal shell in container"
    assert (got.expires - got.at) == timedelta(seconds=900)
    assert r.actions(action="quarantine", result="applied") == 1
    assert any(e["reason"] == "TeflonApplied" and "quarantine" in e["note"] for e in fake.events)


async def test_a_statefulset_pod_falls_back_to_isolation_and_the_decision_says_so() -> None:
    fake = FakeActions()
    fake.add_pod("shop", "db-0", owner=("apps/v1", "StatefulSet", "db"))
    r = rig(_quarantine_policy(), fake)
    await r.send(alert(pod="db-0"))
    assert fake.actions_called() == ["isolate"]
    [event] = [e for e in fake.events if e["reason"] == "TeflonApplied"]
    assert (
        "StatefulSet pod cannot be replaced under its name while it is kept: isolate instead" in event["note"]
    )


async def test_a_statefulset_pod_may_fall_back_to_delete() -> None:
    fake = FakeActions()
    fake.add_pod("shop", "db-0", owner=("apps/v1", "StatefulSet", "db"))
    r = rig(_quarantine_policy(statefulSetFallback="delete"), fake)
    await r.send(alert(pod="db-0"))
    assert fake.actions_called() == ["delete"]


@pytest.mark.parametrize(
    ("owner", "annotations", "reason"),
    [
        (("apps/v1", "DaemonSet", "agent"), None, "daemonset_pod"),
        (None, None, "bare_pod"),
        (None, {"kubernetes.io/config.mirror": "x"}, "static_pod"),
        (("apps/v1", "ReplicaSet", "web-5d8f"), {AT: "2026-12-04T12:00:00Z"}, "quarantined"),
    ],
)
async def test_protected_and_already_quarantined_pods_are_never_quarantined(
    owner: tuple[str, str, str] | None, annotations: dict[str, str] | None, reason: str
) -> None:
    fake = FakeActions()
    fake.replicaset("shop", "web-5d8f")
    fake.add_pod("shop", "web-1", owner=owner, annotations=annotations)
    r = rig(_quarantine_policy(), fake)
    await r.send(alert())
    assert fake.calls == []
    assert r.skips(reason) == 1


async def test_perform_reports_a_failed_fallback_with_its_reason() -> None:
    fake = FakeActions(outcomes={"isolate": ActionResult(Outcome.FAILED, "NetworkPolicy: forbidden")})
    ref = PodRef("shop", "db-0", "u")
    o = QuarantineOrder(**{**order(ref, Plan.ISOLATE).__dict__, "fallback_reason": "why"})
    result = await perform(fake, Q, ref, lambda _a: o)
    assert result == ActionResult(Outcome.FAILED, "why: NetworkPolicy: forbidden")


# --- the keeper ---


def _quarantined(fake: FakeActions, name: str = "web-1", *, marked: bool = True, ns: str = "shop") -> PodRef:
    notes = {AT: stamp(T0), EXPIRES: stamp(T0 + timedelta(seconds=600))} if marked else None
    labels = {QUARANTINE_LABEL: "true"} if marked else {"app": "web"}
    pod = fake.add_pod(ns, name, owner=None, labels=labels, annotations=notes)
    return PodRef(ns, name, pod["metadata"]["uid"])


def _file(fake: FakeActions, ref: PodRef, notes: dict[str, str] | None = None) -> None:
    lease = _record(ref, notes)
    fake.records[("teflon", lease["metadata"]["name"])] = lease


async def _sweep(fake: FakeActions, at: datetime, protected: tuple[str, ...] = ("kube-system",)) -> list[Any]:
    return await sweep_quarantines(fake, "teflon", at, protected=lambda ns: ns in protected)


async def test_the_ttl_deletes_the_quarantined_pod_with_its_uid_and_drops_the_record() -> None:
    fake = FakeActions()
    ref = _quarantined(fake)
    _file(fake, ref)
    assert await _sweep(fake, T0 + timedelta(seconds=300)) == []
    assert fake.calls == []
    [swept] = await _sweep(fake, T0 + timedelta(seconds=601))
    assert swept.due is Due.EXPIRE
    assert fake.calls == [("delete", ref, None)]
    assert fake.records == {}
    assert [e["reason"] for e in fake.events] == ["TeflonQuarantineExpired"]


async def test_a_record_never_deletes_a_pod_without_teflons_marks_or_in_a_protected_namespace() -> None:
    fake = FakeActions()
    forged = _quarantined(fake, "web-2", marked=False)
    _file(fake, forged)
    protected = _quarantined(fake, "dns-1", ns="kube-system")
    _file(fake, protected)
    swept = await _sweep(fake, T0 + timedelta(seconds=601))
    assert sorted(s.outcome for s in swept) == ["not ours", "not ours"]
    assert fake.calls == []
    assert fake.records == {}  # dropped: nothing left to keep


async def test_a_replaced_pod_is_never_deleted_by_its_predecessors_record() -> None:
    fake = FakeActions()
    old = _quarantined(fake)
    _file(fake, old)
    _quarantined(fake)  # same name, new UID
    [swept] = await _sweep(fake, T0 + timedelta(seconds=601))
    assert swept.outcome == "pod gone"
    assert fake.calls == []


async def test_release_deletes_now_and_extend_moves_the_expiry_on_record_and_pod() -> None:
    fake = FakeActions()
    kept = _quarantined(fake, "web-1")
    _file(fake, kept, {EXTEND_REQUEST: "3600"})
    released = _quarantined(fake, "web-2")
    _file(fake, released, {RELEASE_REQUEST: "true"})
    swept = {s.due: s.outcome for s in await _sweep(fake, T0 + timedelta(seconds=60))}
    assert swept == {Due.EXTEND: "extended", Due.RELEASE: "applied"}
    assert fake.actions_called() == ["patch_record", "delete"]
    assert fake.calls[1][1] == released
    [record] = fake.records.values()
    rec = Record.parse(record)
    assert rec is not None
    assert rec.expires == T0 + timedelta(seconds=4200)
    assert rec.extend_seconds is None  # the request was consumed
    pod = fake.pods[("shop", "web-1")]
    assert pod["metadata"]["annotations"][EXPIRES] == "2026-12-04T13:10:00Z"
    reasons = sorted(e["reason"] for e in fake.events)
    assert reasons == ["TeflonQuarantineExtended", "TeflonQuarantineReleased"]
    # kept past the old expiry
    assert await _sweep(fake, T0 + timedelta(seconds=700)) == []


async def test_extension_is_cut_at_thirty_days_and_a_bad_request_is_rejected_with_an_event() -> None:
    fake = FakeActions()
    ref = _quarantined(fake)
    _file(fake, ref, {EXTEND_REQUEST: str(90 * 86400)})
    await _sweep(fake, T0)
    rec = Record.parse(next(iter(fake.records.values())))
    assert rec is not None
    assert rec.expires == T0 + timedelta(days=30)
    assert "30-day ceiling" in fake.events[-1]["note"]
    other = _quarantined(fake, "web-2")
    _file(fake, other, {EXTEND_REQUEST: "a while"})
    await _sweep(fake, T0)
    assert fake.events[-1]["reason"] == "TeflonQuarantineRequestRejected"
    assert fake.pods[("shop", "web-2")]["metadata"]["annotations"][EXPIRES] == stamp(
        T0 + timedelta(seconds=600)
    )


def test_removed_labels_annotation_is_json() -> None:
    ref = PodRef("shop", "web-1", "u-1")
    ops, _ = detach_patch({"metadata": {"uid": "u-1"}}, order(ref), ["app"])
    value = next(o["value"] for o in ops if o["path"].endswith(REMOVED_LABELS.replace("/", "~1")))
    assert json.loads(value) == {}


# --- the service runs the keeper ---


async def test_the_service_sweeps_quarantines_in_enforce_mode_only(
    start_app: StartApp, tmp_path: Path
) -> None:
    for mode, swept in (("dryRun", False), ("enforce", True)):
        fake = FakeActions()
        ref = _quarantined(fake)
        _file(fake, ref)  # quarantined at T0 for 600 s: long expired now
        policy_file = tmp_path / f"{mode}.yaml"
        policy_file.write_text(f"mode: {mode}\n")
        await start_app(make_settings(policy_file=policy_file), actions=fake)
        for _ in range(100):
            if fake.calls:
                break
            await asyncio.sleep(0.02)
        assert (fake.calls == [("delete", ref, None)]) is swept, mode
        assert (fake.records == {}) is swept, mode
