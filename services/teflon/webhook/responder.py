"""From an alert to actions on its pod: the policy's rule, the protections, the limits, the record.

``Responder.handle`` runs on a worker for every queued alert. It counts the alert against its pod,
workload and namespace, picks the first matching rule, and walks that rule's actions through the checks
no rule can override. The checks themselves are pure functions (``decisions``, ``guards``, ``policy``);
what was decided is written by ``record.DecisionRecorder`` (log line, counter, Event) in one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from teflon.common.kube import KubeError
from teflon.webhook.actions import ActionResult, ClusterActions, Outcome, PodReader, perform
from teflon.webhook.alert import Alert
from teflon.webhook.claims import release_or_expire
from teflon.webhook.decisions import Decision, Result, Skip, protection_for, removes_pod, replicas_short
from teflon.webhook.guards import Deduper, Limits
from teflon.webhook.objects import JSON, PodRef, PodView, ReplicaCount
from teflon.webhook.owners import OwnerResolver
from teflon.webhook.policy import (
    Action,
    Mode,
    Policy,
    QuarantineAction,
    Rule,
    candidate_rules,
    effective_mode,
    is_protected_namespace,
    select_rule,
)
from teflon.webhook.quarantine import QuarantineOrder, plan_for
from teflon.webhook.rates import RateTracker, Workload
from teflon.webhook.record import DecisionRecorder, log
from teflon.webhook.scaling import ScalingGuard
from teflon.webhook.telemetry import Telemetry

__all__ = ["Responder"]


@dataclass(frozen=True)
class _Target:
    """One alert's pod under one rule: what every action of the rule is decided against."""

    policy: Policy
    rule: Rule
    mode: Mode
    alert: Alert
    ref: PodRef
    pod: PodView | None  # None without a cluster (dry run only)
    received: float
    workload: Workload | None

    def order(self, action: QuarantineAction, *, record_namespace: str, holder: str) -> QuarantineOrder:
        """The quarantine of this pod under ``action``: its plan by controller, its cause and expiry."""
        controller = self.pod.controller if self.pod is not None else None
        plan, why = plan_for(controller, action)
        return QuarantineOrder(
            pod=self.ref,
            plan=plan,
            controller=controller,
            rule=self.rule.name,
            alert_rule=self.alert.rule,
            alert_priority=self.alert.priority.label,
            alert_output=self.alert.output or "",
            at=datetime.now(UTC).replace(microsecond=0),
            ttl_seconds=action.ttl_seconds,
            record_namespace=record_namespace,
            holder=holder,
            fallback_reason=why,
        )

    def decided(
        self, action: Action, result: Result, reason: Skip | None = None, detail: str = ""
    ) -> Decision:
        return Decision(
            self.alert, self.rule.name, action.type, self.mode, result, reason, detail, self.ref.uid
        )


@dataclass(frozen=True)
class _Read:
    """The one read of an alert's pod: the pod (None: not found), or why the API could not tell."""

    pod: JSON | None
    error: KubeError | None = None


async def _read_pod(pods: PodReader, namespace: str, name: str) -> _Read:
    try:
        return _Read(await pods.get_pod(namespace, name))
    except KubeError as exc:
        return _Read(None, exc)


async def _replicas_short(pods: PodReader | None, policy: Policy, pod: PodView) -> str:
    """Why removing ``pod`` would leave its workload short of ready replicas, or ''; reads its controller."""
    ctrl = pod.controller
    if ctrl is None or pods is None or policy.min_healthy_replicas == 0:
        return ""
    try:
        owner = await pods.get_owner(pod.namespace, ctrl.api_version, ctrl.kind, ctrl.name)
    except KubeError as exc:
        return f"cannot read {ctrl.kind} {ctrl.name}: {exc}"
    return replicas_short(policy, pod, ReplicaCount.parse(owner) if owner is not None else None)


async def _workload(owners: OwnerResolver | None, alert: Alert, read: _Read | None) -> Workload | None:
    """The alert's workload: from the pod just read, else from the owners' cache by pod name."""
    if owners is None or not alert.namespace or not alert.pod:
        return None
    if read is not None and read.error is None:
        if read.pod is None:
            return None
        return await owners.workload_of_read_pod(alert.namespace, alert.pod, read.pod)
    return await owners.workload_of_pod_name(alert.namespace, alert.pod)


class Responder:
    """Applies the policy to alerts. ``actions`` is None when no cluster is configured (dry run only)."""

    def __init__(
        self,
        *,
        policy: Callable[[], Policy | None],
        own_namespace: str,
        telemetry: Telemetry,
        rates: RateTracker,
        actions: ClusterActions | None,
        identity: str = "teflon-webhook",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._own_namespace = own_namespace
        self._identity = identity
        self._telemetry = telemetry
        self._rates = rates
        self._actions = actions
        self._clock = clock
        self.owners = OwnerResolver(actions, clock=clock) if actions is not None else None
        self.dedupe = Deduper(clock)
        self.limits = Limits(clock)
        self.record = DecisionRecorder(telemetry=telemetry, events=actions)
        self.scaling = ScalingGuard(rates)
        telemetry.circuit_open.set_function(lambda: 1.0 if self.circuit_open else 0.0)

    @property
    def circuit_open(self) -> bool:
        return self.limits.circuit_open

    async def handle(self, alert: Alert, received: float) -> None:
        """Count one alert and respond to it according to the current policy."""
        if alert.internal:
            extra = {"rule": alert.rule, "priority": alert.priority.label, "hostname": alert.hostname}
            log.info("falco internal message", extra=extra)
            return
        policy = self._policy()
        candidates = candidate_rules(policy, alert) if policy is not None else []
        read: _Read | None = None
        if (
            policy is not None
            and candidates
            and alert.namespace is not None
            and alert.pod is not None
            and self._actions is not None
            and not is_protected_namespace(policy, self._own_namespace, alert.namespace)
        ):
            # The one read of the pod per alert: the decisions, the workload and the action all use it.
            read = await _read_pod(self._actions, alert.namespace, alert.pod)
            if read.pod is not None and PodView.parse(read.pod).acted_on:  # isolated, quarantined: muted
                self.scaling.mute(policy.guardrail, alert.namespace, alert.pod)
        workload = await _workload(self.owners, alert, read)
        self.scaling.count_alert(policy.guardrail if policy is not None else None, alert, workload)
        if policy is None:  # an invalid file at startup: count alerts, decide nothing until a valid one
            return
        if candidates and alert.namespace is not None and alert.pod is not None:
            await self._respond(
                policy,
                candidates,
                alert,
                namespace=alert.namespace,
                name=alert.pod,
                received=received,
                workload=workload,
                read=read,
            )

    async def _respond(
        self,
        policy: Policy,
        candidates: list[Rule],
        alert: Alert,
        *,
        namespace: str,
        name: str,
        received: float,
        workload: Workload | None,
        read: _Read | None,
    ) -> None:
        if is_protected_namespace(policy, self._own_namespace, namespace):
            await self._skip_rule(policy, candidates[0], alert, Skip.PROTECTED_NAMESPACE)
            return
        pod: PodView | None = None
        if read is not None:  # None only without a cluster: ``handle`` reads whenever it gets here
            if read.error is not None:
                await self._skip_rule(policy, candidates[0], alert, Skip.LOOKUP_FAILED, str(read.error))
                return
            if read.pod is None:
                await self._skip_rule(policy, candidates[0], alert, Skip.POD_NOT_FOUND)
                return
            pod = PodView.parse(read.pod)
        rule = select_rule(candidates, pod.labels if pod is not None else None)
        if rule is None:
            return
        mode = effective_mode(policy, rule)
        if pod is None and mode is Mode.ENFORCE:
            await self._skip_rule(
                policy, rule, alert, Skip.NO_CLUSTER, "enforce mode needs the Kubernetes API"
            )
            return
        protection = protection_for(policy, alert, pod) if pod is not None else None
        if protection is not None and pod is not None:
            detail = ""
            if protection is Skip.NODE_MISMATCH:
                self._telemetry.node_mismatch.inc()
                detail = f"pod runs on {pod.node!r}"
            await self._skip_rule(
                policy, rule, alert, protection, detail, ref=PodRef(namespace, name, pod.uid)
            )
            return
        uid = pod.uid if pod is not None else (alert.pod_uid or "")
        target = _Target(policy, rule, mode, alert, PodRef(namespace, name, uid), pod, received, workload)
        for action in rule.actions:
            decision = await self._act(target, action)
            await self.record.decided(decision, target.ref if pod is not None else None)
            if decision.stops:
                break

    async def _act(self, t: _Target, action: Action) -> Decision:
        key = (t.ref.uid or f"{t.ref.namespace}/{t.ref.name}", action.type.value, t.mode.value)
        if not self.dedupe.first(key, t.policy.dedupe_seconds):
            return t.decided(action, Result.SKIPPED, Skip.DEDUPED)
        if t.pod is not None and removes_pod(action.type):
            short = await _replicas_short(self._actions, t.policy, t.pod)
            if short:
                self.dedupe.forget(key)
                return t.decided(action, Result.SKIPPED, Skip.MIN_HEALTHY_REPLICAS, short)
        if t.mode is Mode.DRY_RUN:
            detail = "" if t.pod is not None else "pod not inspected: no cluster configured"
            return t.decided(action, Result.DRY_RUN, detail=detail)
        budget, breaker = self.limits.of(t.policy)
        skip = Skip.CIRCUIT_OPEN if breaker.open else None
        if skip is None and not budget.try_take(t.ref.namespace):
            skip = Skip.BUDGET
        if skip is not None:
            self.dedupe.forget(key)
            return t.decided(action, Result.SKIPPED, skip)
        # Counted when admitted, before the claim and the API call: concurrent workers must not all
        # slip through while the calls that would trip the breaker are still in flight.
        if breaker.record():
            await self.record.circuit_opened(t.policy.circuit_breaker, t.ref)
        decision = await self._enforce(t, action)
        if decision.result in (Result.BLOCKED, Result.FAILED, Result.ERROR):
            self.dedupe.forget(key)  # nothing changed: a later alert may try again
        return decision

    async def _enforce(self, t: _Target, action: Action) -> Decision:
        """Claim (pod UID, action) cluster-wide, then act: alerts about one pod reach every replica."""
        if self._actions is None:  # pragma: no cover - enforce without a cluster is skipped earlier
            return t.decided(action, Result.SKIPPED, Skip.NO_CLUSTER)
        try:
            claim = await self._actions.claim(
                t.ref,
                action.type.value,
                holder=self._identity,
                namespace=self._own_namespace,
                rule=t.rule.name,
                seconds=t.policy.dedupe_seconds,
            )
        except KubeError as exc:
            # Fail closed: without the claim another replica may be acting on this pod right now.
            extra = {"namespace": t.ref.namespace, "pod": t.ref.name, "pod_uid": t.ref.uid, "error": str(exc)}
            log.error("claim not taken: not acting", extra=extra | {"action": action.type.value})
            return t.decided(action, Result.ERROR, detail=f"claim Lease in {self._own_namespace}: {exc}")
        if claim is None:
            return t.decided(action, Result.SKIPPED, Skip.DUPLICATE, "another replica holds the claim")
        try:
            order = partial(t.order, record_namespace=self._own_namespace, holder=self._identity)
            has_labels = t.pod is not None and bool(t.pod.labels)
            result = await perform(self._actions, action, t.ref, order, has_labels=has_labels)
        except KubeError as exc:  # implementations map expected answers; anything else is a failure
            result = ActionResult(Outcome.FAILED, str(exc))
        self._telemetry.action_latency.labels(action.type.value).observe(max(0.0, self._clock() - t.received))
        if result.outcome in (Outcome.BLOCKED, Outcome.FAILED):
            await release_or_expire(self._actions, claim)
        if result.outcome is Outcome.APPLIED:
            self.scaling.responded(t.policy.guardrail, t.rule.name, t.alert.priority, t.ref, t.workload)
        return t.decided(action, Result(result.outcome.value), detail=result.detail)

    async def _skip_rule(
        self,
        policy: Policy,
        rule: Rule,
        alert: Alert,
        reason: Skip,
        detail: str = "",
        *,
        ref: PodRef | None = None,
    ) -> None:
        mode = effective_mode(policy, rule)
        # One line (and Event) per pod and reason per dedupe window: a noisy pod must not flood the log.
        key = (f"{alert.namespace}/{alert.pod}", f"skip:{reason.value}", mode.value)
        first = self.dedupe.first(key, policy.dedupe_seconds)
        d = Decision(alert, rule.name, rule.actions[0].type, mode, Result.SKIPPED, reason, detail)
        await self.record.rule_skipped(rule, d, first=first, ref=ref)
