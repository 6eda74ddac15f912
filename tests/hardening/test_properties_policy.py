"""Properties of the responder under any policy and any stream of alerts.

Whatever the rules say, however alerts arrive (bursts, concurrent workers, repeats, replaced pods,
failing API calls), the responder never changes a pod in a protected namespace, never changes more
than its budgets allow, never acts twice on one pod UID and action inside the dedupe window, never
quarantines a pod UID twice, never acts at all in dry-run mode, and only ever names the UID the pod
has at that moment.
"""

from __future__ import annotations

import asyncio
import fnmatch
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from teflon.common.kube import JSON
from teflon.webhook.actions import ActionResult, Outcome
from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.claims import Claim
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Mode, Policy, effective_mode, is_protected_namespace
from teflon.webhook.quarantine import AT as QUARANTINED_AT
from teflon.webhook.quarantine import QuarantineOrder
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry
from tests.harness.falco import alert_doc

OWN_NAMESPACE = "teflon"
NAMESPACES = ["default", "shop", "kube-system", "kube-public", OWN_NAMESPACE, "dev-a", "prod"]
PODS = [(ns, f"web-{i}") for ns in NAMESPACES for i in range(3)]
ACTIONS = ["label", "isolate", "evict", "delete", "quarantine"]
FAILING = (Outcome.FAILED, Outcome.BLOCKED)  # nothing changed: the responder may try again
EPS = 1e-6


@dataclass
class Call:
    at: float
    action: str
    ref: PodRef
    outcome: Outcome


@dataclass
class RecordingCluster:
    """Pods in a dict; every mutating call recorded with the clock time and the outcome it returned."""

    clock: list[float]
    outcomes: list[Outcome]
    pods: dict[tuple[str, str], JSON] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    uid_mismatches: int = 0
    quarantined: set[str] = field(default_factory=set)  # UIDs quarantined (applied)
    double_quarantines: int = 0
    leases: dict[str, float] = field(default_factory=dict)  # claim name -> expiry on the clock

    def put_pod(self, namespace: str, name: str) -> None:
        self.pods[(namespace, name)] = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": {"app": "web"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "controller": True}
                ],
            },
            "spec": {"nodeName": "node-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        await asyncio.sleep(0)  # let concurrent workers interleave here, as a real API call would
        return self.pods.get((namespace, name))

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        await asyncio.sleep(0)
        return None

    async def _act(self, action: str, ref: PodRef) -> ActionResult:
        current = self.pods.get((ref.namespace, ref.name))
        if current is None or current["metadata"]["uid"] != ref.uid:
            self.uid_mismatches += 1
        outcome = self.outcomes[len(self.calls) % len(self.outcomes)]
        self.calls.append(Call(self.clock[0], action, ref, outcome))
        await asyncio.sleep(0)
        return ActionResult(outcome, action)

    async def label_pod(
        self, pod: PodRef, labels: dict[str, str], *, has_labels: bool = False
    ) -> ActionResult:
        return await self._act("label", pod)

    async def isolate_pod(self, pod: PodRef) -> ActionResult:
        return await self._act("isolate", pod)

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        return await self._act("evict", pod)

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        return await self._act("delete", pod)

    async def quarantine_pod(self, order: QuarantineOrder) -> ActionResult:
        ref = order.pod
        if ref.uid in self.quarantined:
            self.double_quarantines += 1
        result = await self._act("quarantine", ref)
        current = self.pods.get((ref.namespace, ref.name))
        if (
            result.outcome is Outcome.APPLIED
            and current is not None
            and current["metadata"]["uid"] == ref.uid
        ):
            # What the real patch writes; its record Lease (one per UID) is modelled by the set.
            self.quarantined.add(ref.uid)
            current["metadata"].setdefault("annotations", {})[QUARANTINED_AT] = "2026-12-04T12:00:00Z"
        return result

    async def quarantine_records(self, namespace: str) -> list[JSON]:
        return []

    async def patch_record(self, namespace: str, name: str, patch: list[JSON]) -> bool:
        return False

    async def delete_record(self, namespace: str, name: str, resource_version: str) -> None:
        return None

    async def mark_expiry(self, namespace: str, name: str, uid: str, expires: str) -> None:
        return None

    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        await asyncio.sleep(0)

    async def claim(
        self, pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float
    ) -> Claim | None:
        name = f"{action}-{pod.uid}"
        if self.leases.get(name, -1.0) > self.clock[0]:
            return None
        self.leases[name] = self.clock[0] + seconds
        await asyncio.sleep(0)
        return Claim(namespace, name, "1")

    async def release(self, claim: Claim) -> None:
        self.leases.pop(claim.name, None)

    async def sweep_claims(self, namespace: str) -> int:
        return 0

    async def reachable(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


BUCKETS = st.fixed_dictionaries(
    {
        "perMinute": st.floats(min_value=0.1, max_value=600, allow_nan=False),
        "burst": st.integers(min_value=1, max_value=15),
    }
)
RULES = st.lists(
    st.fixed_dictionaries(
        {
            "actions": st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4, unique=True).map(
                lambda names: [{"type": n} for n in names]
            ),
            "mode": st.sampled_from(["enforce", "enforce", "dryRun"]),
            "match": st.fixed_dictionaries(
                {
                    "rules": st.sampled_from([[], ["Terminal shell*"], ["Write below etc"]]),
                    "minPriority": st.sampled_from(["Debug", "Warning", "Critical"]),
                    "namespaces": st.sampled_from(
                        [
                            {"include": ["*"]},
                            {"include": ["*"], "exclude": ["dev-*"]},
                            {"include": ["kube-*"]},
                        ]
                    ),
                }
            ),
        }
    ),
    min_size=1,
    max_size=3,
).map(lambda rules: [dict(r, name=f"rule-{i}") for i, r in enumerate(rules)])
POLICIES = st.builds(
    lambda mode, protected, glob, budgets_g, budgets_ns, dedupe, rules, bare: Policy.model_validate(
        {
            "mode": mode,
            "protectedNamespaces": protected + glob,
            "allowBarePods": bare,
            "nodeCheck": True,
            "minHealthyReplicas": 0,
            "dedupeSeconds": dedupe,
            "budgets": {"global": budgets_g, "perNamespace": budgets_ns},
            "circuitBreaker": {"maxActions": 10_000, "windowSeconds": 60, "cooldownSeconds": 60},
            "rules": rules,
        }
    ),
    st.sampled_from(["enforce", "enforce", "enforce", "dryRun"]),
    st.lists(st.sampled_from(NAMESPACES), max_size=3, unique=True),
    st.sampled_from([[], ["kube-*"], ["d*"]]),
    BUCKETS,
    BUCKETS,
    st.sampled_from([0, 0.5, 5, 60, 300]),
    RULES,
    st.booleans(),
)
ALERT_RULES = st.sampled_from(
    ["Terminal shell in container", "Write below etc", "Drop and execute new binary"]
)
PRIORITIES = st.sampled_from(["Debug", "Notice", "Warning", "Error", "Critical"])


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Steps: advance the clock, replace a pod (new UID, same name), or deliver a burst of alerts."""
    steps: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        kind = draw(st.sampled_from(["tick", "burst", "burst", "burst", "replace"]))
        if kind == "tick":
            steps.append(("tick", draw(st.sampled_from([0.0, 0.01, 0.3, 1.0, 7.0, 61.0, 400.0]))))
        elif kind == "replace":
            steps.append(("replace", draw(st.sampled_from(PODS))))
        else:
            burst = draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(PODS),
                        ALERT_RULES,
                        PRIORITIES,
                        st.sampled_from(["node-1", "node-1", "node-2"]),
                        st.booleans(),  # does the alert carry the pod UID (k8s.pod.uid, Falco 0.41+)?
                    ),
                    min_size=1,
                    max_size=8,
                )
            )
            steps.append(("burst", burst))
    return steps


def make_alert(cluster: RecordingCluster, item: tuple[tuple[str, str], str, str, str, bool]) -> Alert:
    pod, rule, priority, node, uid = item
    namespace, name = pod
    pod_uid = cluster.pods[pod]["metadata"]["uid"] if uid else None
    doc = alert_doc(namespace, name, rule=rule, priority=priority, hostname=node, uid=pod_uid)
    return parse_one(doc, received=datetime.now(UTC))


async def replay(policy: Policy, steps: list[tuple[str, Any]], outcomes: list[Outcome]) -> RecordingCluster:
    clock = [1000.0]
    cluster = RecordingCluster(clock, outcomes)
    for namespace, name in PODS:
        cluster.put_pod(namespace, name)
    responder = Responder(
        policy=lambda: policy,
        own_namespace=OWN_NAMESPACE,
        telemetry=Telemetry(CollectorRegistry()),
        rates=RateTracker(max_tracked=1000, ttl_seconds=900, clock=lambda: clock[0]),
        actions=cluster,
        clock=lambda: clock[0],
    )
    for kind, arg in steps:
        if kind == "tick":
            clock[0] += arg
        elif kind == "replace":
            cluster.put_pod(*arg)
        else:
            alerts = [make_alert(cluster, item) for item in arg]
            # Several workers take alerts off the queue at once (WEBHOOK_WORKERS): handle them concurrently.
            await asyncio.gather(*(responder.handle(a, clock[0]) for a in alerts))
    return cluster


def protected(policy: Policy, namespace: str) -> bool:
    return namespace == OWN_NAMESPACE or any(
        fnmatch.fnmatchcase(namespace, p) for p in policy.protected_namespaces
    )


def assert_within_bucket(times: list[float], per_minute: float, burst: int, what: str) -> None:
    """A bucket of ``burst`` tokens refilled at ``per_minute`` allows at most burst + rate * span calls."""
    times = sorted(times)
    rate = per_minute / 60.0
    for i in range(len(times)):
        for j in range(i, len(times)):
            allowed = burst + rate * (times[j] - times[i]) + EPS
            assert j - i + 1 <= allowed, f"{what}: {j - i + 1} actions in {times[j] - times[i]:.3f}s"


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OUTCOMES = st.lists(
    st.sampled_from(
        [Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.FAILED, Outcome.BLOCKED, Outcome.GONE]
    ),
    min_size=1,
    max_size=5,
)


@PROPERTY
@given(policy=POLICIES, steps=streams(), outcomes=OUTCOMES)
def test_no_policy_and_no_alert_stream_breaks_the_guards(
    policy: Policy, steps: list[tuple[str, Any]], outcomes: list[Outcome]
) -> None:
    cluster = asyncio.run(replay(policy, steps, outcomes))
    calls = cluster.calls

    if policy.mode is Mode.DRY_RUN:
        assert calls == [], "dry run changed the cluster"
    for call in calls:
        assert not protected(policy, call.ref.namespace), f"acted in protected namespace {call.ref.namespace}"
    assert cluster.uid_mismatches == 0, "an action named a UID the pod no longer has"
    assert cluster.double_quarantines == 0, "a pod UID was quarantined twice"

    # Every call took one token from the global bucket and one from its namespace's bucket.
    budgets = policy.budgets
    assert_within_bucket([c.at for c in calls], budgets.global_.per_minute, budgets.global_.burst, "global")
    for namespace in {c.ref.namespace for c in calls}:
        assert_within_bucket(
            [c.at for c in calls if c.ref.namespace == namespace],
            budgets.per_namespace.per_minute,
            budgets.per_namespace.burst,
            f"namespace {namespace}",
        )

    # One action per pod UID and action type within the dedupe window, unless the earlier one changed nothing.
    last: dict[tuple[str, str], Call] = {}
    for call in calls:
        key = (call.ref.uid, call.action)
        before = last.get(key)
        if before is not None and before.outcome not in FAILING:
            assert call.at - before.at >= policy.dedupe_seconds - EPS, (
                f"{call.action} on {call.ref.uid} twice within {policy.dedupe_seconds}s"
            )
        last[key] = call


@settings(max_examples=300, deadline=None)
@given(policy=POLICIES, namespace=st.sampled_from([*NAMESPACES, "kube-x", "d", "teflon-2"]))
def test_the_own_namespace_is_always_protected_and_globs_are_honoured(policy: Policy, namespace: str) -> None:
    assert is_protected_namespace(policy, OWN_NAMESPACE, OWN_NAMESPACE)
    assert is_protected_namespace(policy, OWN_NAMESPACE, namespace) == protected(policy, namespace)


@settings(max_examples=300, deadline=None)
@given(policy=POLICIES)
def test_a_rule_never_enforces_while_the_global_mode_is_dry_run(policy: Policy) -> None:
    for rule in policy.rules:
        mode = effective_mode(policy, rule)
        if policy.mode is Mode.DRY_RUN or rule.mode is Mode.DRY_RUN:
            assert mode is Mode.DRY_RUN
        else:
            assert mode is Mode.ENFORCE
