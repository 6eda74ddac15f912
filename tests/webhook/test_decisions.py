"""The responder's pure decisions, table-driven: protections, replicas, when a list stops, what is said."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.decisions import (
    Decision,
    Result,
    Skip,
    event_text,
    protection_for,
    removes_pod,
    replicas_short,
)
from teflon.webhook.guards import Limits
from teflon.webhook.objects import OwnerRef, PodView, ReplicaCount
from teflon.webhook.policy import ActionType, Mode, Policy

from .clock import FakeClock

RS = OwnerRef("apps/v1", "ReplicaSet", "web-5d8f", controller=True)


def make_policy(**extra: Any) -> Policy:
    doc: dict[str, Any] = {"rules": [{"name": "r", "actions": [{"type": "delete"}]}], **extra}
    return Policy.model_validate(doc)


def make_alert(uid: str | None = None, hostname: str = "node-1") -> Alert:
    fields = {"k8s.ns.name": "shop", "k8s.pod.name": "web-1"}
    if uid is not None:
        fields["k8s.pod.uid"] = uid
    doc = {
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "hostname": hostname,
        "output_fields": fields,
    }
    return parse_one(doc, received=datetime.now(UTC))


def make_pod(**changes: Any) -> PodView:
    fields: dict[str, Any] = {
        "namespace": "shop",
        "name": "web-1",
        "uid": "u-1",
        "labels": {},
        "annotations": {},
        "node": "node-1",
        "owners": (RS,),
        "ready": True,
    }
    fields.update(changes)
    return PodView(**fields)


@pytest.mark.parametrize(
    ("pod", "policy", "alert", "expected"),
    [
        (make_pod(), make_policy(), make_alert(), None),
        (make_pod(labels={"teflon.io/ignore": "true"}), make_policy(), make_alert(), Skip.OPTED_OUT),
        (
            make_pod(annotations={"kubernetes.io/config.mirror": "x"}),
            make_policy(),
            make_alert(),
            Skip.STATIC_POD,
        ),
        (
            make_pod(owners=(OwnerRef("v1", "Node", "n", controller=True),)),
            make_policy(),
            make_alert(),
            Skip.STATIC_POD,
        ),
        (
            make_pod(owners=(OwnerRef("apps/v1", "DaemonSet", "agent", controller=True),)),
            make_policy(),
            make_alert(),
            Skip.DAEMONSET_POD,
        ),
        (make_pod(owners=()), make_policy(), make_alert(), Skip.BARE_POD),
        (make_pod(owners=()), make_policy(allowBarePods=True), make_alert(), None),
        (make_pod(), make_policy(), make_alert(uid="u-2"), Skip.POD_REPLACED),
        (make_pod(), make_policy(), make_alert(uid="u-1"), None),
        (make_pod(node="node-2"), make_policy(), make_alert(), Skip.NODE_MISMATCH),
        (make_pod(node="node-2"), make_policy(nodeCheck=False), make_alert(), None),
    ],
)
def test_protections_forbid_touching_the_pods_no_rule_may_touch(
    pod: PodView, policy: Policy, alert: Alert, expected: Skip | None
) -> None:
    assert protection_for(policy, alert, pod) is expected


def test_evict_delete_and_quarantine_take_a_pod_out_of_its_workload() -> None:
    removing = {a for a in ActionType if removes_pod(a)}
    assert removing == {ActionType.EVICT, ActionType.DELETE, ActionType.QUARANTINE}


@pytest.mark.parametrize(
    ("ready_pods", "pod_ready", "minimum", "short"),
    [
        (3, True, 1, False),
        (1, True, 1, True),  # the last ready pod
        (2, True, 2, True),
        (1, False, 1, False),  # an unready pod leaves the ready count alone
        (0, False, 1, True),
    ],
)
def test_removing_a_pod_is_refused_when_its_workload_would_be_left_short(
    ready_pods: int, pod_ready: bool, minimum: int, short: bool
) -> None:
    why = replicas_short(
        make_policy(minHealthyReplicas=minimum),
        make_pod(ready=pod_ready),
        ReplicaCount(replicated=True, ready=ready_pods),
    )
    assert bool(why) is short
    if short:
        assert why.startswith(f"ReplicaSet web-5d8f has {ready_pods} ready pods")


def test_controllers_without_replicas_and_unknown_controllers_are_not_guarded() -> None:
    policy = make_policy(minHealthyReplicas=5)
    assert replicas_short(policy, make_pod(), ReplicaCount(replicated=False, ready=0)) == ""
    assert replicas_short(policy, make_pod(), None) == ""
    assert replicas_short(policy, make_pod(owners=()), ReplicaCount(replicated=True, ready=0)) == ""


def test_a_pod_view_reads_the_fields_decisions_use_from_the_api_object() -> None:
    pod = PodView.parse(
        {
            "metadata": {
                "namespace": "shop",
                "name": "web-1",
                "uid": "u-1",
                "labels": {"app": "web"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "x"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "controller": True},
                ],
            },
            "spec": {"nodeName": "node-1"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ]
            },
        }
    )
    assert (pod.uid, pod.node, pod.ready, pod.labels) == ("u-1", "node-1", False, {"app": "web"})
    assert pod.controller == RS
    assert not pod.static
    empty = PodView.parse({})
    assert (empty.uid, empty.node, empty.ready, empty.controller) == ("", None, False, None)
    assert ReplicaCount.parse({"spec": {"replicas": 3}, "status": {}}) == ReplicaCount(True, 0)
    assert ReplicaCount.parse({"spec": {}}) == ReplicaCount(False, 0)


def decision(result: Result, reason: Skip | None = None, detail: str = "") -> Decision:
    return Decision(make_alert(), "r", ActionType.DELETE, Mode.ENFORCE, result, reason, detail, "u-1")


@pytest.mark.parametrize(
    ("d", "stops"),
    [
        (decision(Result.APPLIED), False),
        (decision(Result.DRY_RUN), False),
        (decision(Result.SKIPPED, Skip.DEDUPED), False),
        (decision(Result.SKIPPED, Skip.DUPLICATE), True),
        (decision(Result.SKIPPED, Skip.BUDGET), True),
        (decision(Result.GONE), True),
        (decision(Result.REPLACED), True),
        (decision(Result.BLOCKED), True),
        (decision(Result.FAILED), True),
        (decision(Result.ERROR), True),
    ],
)
def test_a_decision_ends_the_rules_action_list_unless_the_action_happened_or_was_a_repeat(
    d: Decision, stops: bool
) -> None:
    assert d.stops is stops


def test_every_result_has_an_event_and_only_skips_are_not_warnings() -> None:
    for result in Result:
        text = event_text(decision(result, Skip.BUDGET if result is Result.SKIPPED else None, "why"))
        assert text.action == "Delete"
        assert text.warning is (result is not Result.SKIPPED)
        assert text.note.endswith(
            "Falco rule 'Terminal shell in container' (Critical) on node-1, policy rule 'r'"
        )
    assert event_text(decision(Result.DRY_RUN)).reason == "TeflonDryRun"
    assert event_text(decision(Result.SKIPPED, Skip.BUDGET)).note.startswith("delete skipped: budget.")
    assert event_text(decision(Result.BLOCKED, detail="PDB")).reason == "TeflonBlocked"
    assert decision(Result.SKIPPED, Skip.BUDGET).fields()["reason"] == "budget"


def test_limits_keep_their_state_across_a_reload_with_the_same_settings() -> None:
    clock = FakeClock()
    limits = Limits(clock)
    first = make_policy(circuitBreaker={"maxActions": 1})
    budget, breaker = limits.load(first)
    assert breaker.record()  # trips
    assert limits.circuit_open
    same = make_policy(circuitBreaker={"maxActions": 1})
    assert limits.load(same) == (budget, breaker)
    assert limits.of(same) == (budget, breaker)
    assert limits.circuit_open
    _budget, other = limits.load(make_policy(circuitBreaker={"maxActions": 2}))
    assert other is not breaker
    assert not limits.circuit_open
    assert limits.of(make_policy(budgets={"global": {"perMinute": 1, "burst": 1}}))[0] is not budget
