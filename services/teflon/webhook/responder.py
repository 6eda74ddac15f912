"""From an alert to actions on its pod: the policy's rule, the protections, the limits, the record.

``Responder.handle`` runs on a worker for every queued alert. It counts the alert against its pod,
workload and namespace, picks the first matching rule, and walks that rule's actions through the checks
no rule can override. Every decision ends in one INFO log line with structured fields, a counter and
(when a cluster is reachable and something was decided about a real pod) a Kubernetes Event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from teflon.common.kube import JSON, KubeError
from teflon.common.wire import Signal
from teflon.webhook.actions import ActionResult, Claim, ClusterActions, Outcome, PodRef
from teflon.webhook.alert import Alert
from teflon.webhook.guards import ActionBudget, CircuitBreaker, Deduper
from teflon.webhook.owners import OwnerResolver, controller_ref
from teflon.webhook.policy import (
    Action,
    ActionType,
    DeleteAction,
    EvictAction,
    LabelAction,
    Mode,
    Policy,
    Rule,
    candidate_rules,
    effective_mode,
    is_protected_namespace,
    select_rule,
)
from teflon.webhook.rates import RateTracker, Workload
from teflon.webhook.telemetry import Telemetry

log = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class Skip(StrEnum):
    """Why an action was not taken (``teflon_webhook_skips_total{reason}``)."""

    PROTECTED_NAMESPACE = "protected_namespace"
    OPTED_OUT = "opted_out"
    STATIC_POD = "static_pod"
    DAEMONSET_POD = "daemonset_pod"
    BARE_POD = "bare_pod"
    NODE_MISMATCH = "node_mismatch"
    POD_NOT_FOUND = "pod_not_found"
    POD_REPLACED = "pod_replaced"
    NO_CLUSTER = "no_cluster"
    MIN_HEALTHY_REPLICAS = "min_healthy_replicas"
    DEDUPED = "deduped"
    DUPLICATE = "duplicate"  # another replica (or this one, earlier) holds the cluster-wide claim
    BUDGET = "budget"
    CIRCUIT_OPEN = "circuit_open"
    LOOKUP_FAILED = "lookup_failed"


# Results that end the rule's action list for this pod: it is gone, replaced, or the step did not happen.
# ``error``: the claim could not be taken, so nothing was done and nothing after it may be.
ERROR = "error"
_STOP = {Outcome.GONE, Outcome.REPLACED, Outcome.BLOCKED, Outcome.FAILED, ERROR}


def pod_ready(pod: JSON) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def protection_for(policy: Policy, alert: Alert, pod: JSON) -> Skip | None:
    """The protection that forbids touching ``pod`` for ``alert``, if any. Pure; no rule overrides it."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(policy.opt_out_label) == "true":
        return Skip.OPTED_OUT
    refs = meta.get("ownerReferences") or []
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}) or any(r.get("kind") == "Node" for r in refs):
        return Skip.STATIC_POD
    ctrl = controller_ref(pod)
    if ctrl is not None and ctrl.get("kind") == "DaemonSet":
        return Skip.DAEMONSET_POD
    if ctrl is None and not policy.allow_bare_pods:
        return Skip.BARE_POD
    if alert.pod_uid is not None and meta.get("uid") != alert.pod_uid:
        return Skip.POD_REPLACED
    if policy.node_check and pod.get("spec", {}).get("nodeName") != alert.hostname:
        return Skip.NODE_MISMATCH
    return None


@dataclass(frozen=True)
class Decision:
    """One action's fate for one pod: what the log line, the counter and the Event say."""

    alert: Alert
    rule: str
    action: ActionType
    mode: Mode
    result: str
    reason: str = ""
    detail: str = ""
    pod_uid: str = ""


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
        self._budget_for: Policy | None = None
        self._budget: ActionBudget | None = None
        self._breaker: CircuitBreaker | None = None
        telemetry.circuit_open.set_function(lambda: 1.0 if self.circuit_open else 0.0)

    def _limits(self, policy: Policy) -> tuple[ActionBudget, CircuitBreaker]:
        # New budgets when the policy changes; the breaker keeps its state unless its settings changed.
        if self._budget is None or self._breaker is None or self._budget_for is not policy:
            if self._budget_for is None or self._budget_for.budgets != policy.budgets or self._budget is None:
                self._budget = ActionBudget(policy.budgets, clock=self._clock)
            if self._breaker is None or self._breaker.cfg != policy.circuit_breaker:
                self._breaker = CircuitBreaker(policy.circuit_breaker, clock=self._clock)
            self._budget_for = policy
        return self._budget, self._breaker

    @property
    def circuit_open(self) -> bool:
        return self._breaker is not None and self._breaker.open

    async def handle(self, alert: Alert, received: float) -> None:
        """Count one alert and respond to it according to the current policy."""
        if alert.internal:
            log.info(
                "falco internal message",
                extra={"rule": alert.rule, "priority": alert.priority.label, "hostname": alert.hostname},
            )
            return
        workload: Workload | None = None
        if self.owners is not None and alert.namespace and alert.pod:
            workload = await self.owners.workload_of_pod_name(alert.namespace, alert.pod)
        self._rates.record(
            Signal.ALERTS,
            alert.rule,
            alert.priority,
            namespace=alert.namespace,
            pod=alert.pod,
            workload=workload,
        )
        policy = self._policy()
        if policy is None:  # an invalid file at startup: count alerts, decide nothing until a valid one
            return
        candidates = candidate_rules(policy, alert)
        if not candidates or alert.namespace is None or alert.pod is None:
            return
        await self._respond(policy, candidates, alert, received, workload)

    async def _respond(
        self, policy: Policy, candidates: list[Rule], alert: Alert, received: float, workload: Workload | None
    ) -> None:
        if alert.namespace is None or alert.pod is None:  # pragma: no cover - checked by the caller
            return
        if is_protected_namespace(policy, self._own_namespace, alert.namespace):
            await self._skip_rule(policy, candidates[0], alert, Skip.PROTECTED_NAMESPACE, "")
            return
        pod: JSON | None = None
        if self._actions is not None:
            try:
                pod = await self._actions.get_pod(alert.namespace, alert.pod)
            except KubeError as exc:
                await self._skip_rule(policy, candidates[0], alert, Skip.LOOKUP_FAILED, str(exc))
                return
            if pod is None:
                await self._skip_rule(policy, candidates[0], alert, Skip.POD_NOT_FOUND, "")
                return
        labels = (pod.get("metadata", {}).get("labels") or {}) if pod is not None else None
        rule = select_rule(candidates, labels)
        if rule is None:
            return
        mode = effective_mode(policy, rule)
        if pod is None:
            if mode is Mode.ENFORCE:
                await self._skip_rule(
                    policy, rule, alert, Skip.NO_CLUSTER, "enforce mode needs the Kubernetes API"
                )
                return
        else:
            protection = protection_for(policy, alert, pod)
            if protection is not None:
                if protection is Skip.NODE_MISMATCH:
                    self._telemetry.node_mismatch.inc()
                detail = (
                    f"pod runs on {pod.get('spec', {}).get('nodeName')!r}"
                    if protection is Skip.NODE_MISMATCH
                    else ""
                )
                await self._skip_rule(policy, rule, alert, protection, detail, pod=pod)
                return
        uid = str(pod["metadata"].get("uid", "")) if pod is not None else (alert.pod_uid or "")
        ref = PodRef(alert.namespace, alert.pod, uid)
        for action in rule.actions:
            decision = await self._act(
                policy=policy,
                rule=rule,
                mode=mode,
                action=action,
                alert=alert,
                ref=ref,
                pod=pod,
                received=received,
                workload=workload,
            )
            await self._record(decision, ref if pod is not None else None)
            # A duplicate stops the list too: the replica holding the claim walks the rest of it.
            if decision.result in _STOP or (decision.result == "skipped" and decision.reason != Skip.DEDUPED):
                break

    async def _act(
        self,
        *,
        policy: Policy,
        rule: Rule,
        mode: Mode,
        action: Action,
        alert: Alert,
        ref: PodRef,
        pod: JSON | None,
        received: float,
        workload: Workload | None,
    ) -> Decision:
        def decided(result: str, reason: str = "", detail: str = "") -> Decision:
            return Decision(alert, rule.name, action.type, mode, result, reason, detail, ref.uid)

        key = (ref.uid or f"{ref.namespace}/{ref.name}", action.type.value, mode.value)
        if not self.dedupe.first(key, policy.dedupe_seconds):
            return decided("skipped", Skip.DEDUPED)
        if pod is not None and action.type in (ActionType.EVICT, ActionType.DELETE):
            short = await self._replicas_short(policy, pod)
            if short:
                self.dedupe.forget(key)
                return decided("skipped", Skip.MIN_HEALTHY_REPLICAS, short)
        if mode is Mode.DRY_RUN:
            return decided(
                "dry_run", detail="" if pod is not None else "pod not inspected: no cluster configured"
            )
        if self._actions is None:  # pragma: no cover - enforce without a cluster is skipped earlier
            return decided("skipped", Skip.NO_CLUSTER)
        budget, breaker = self._limits(policy)
        if breaker.open:
            self.dedupe.forget(key)
            return decided("skipped", Skip.CIRCUIT_OPEN)
        if not budget.try_take(ref.namespace):
            self.dedupe.forget(key)
            return decided("skipped", Skip.BUDGET)
        # Counted when admitted, before the claim and the API call: concurrent workers must not all
        # slip through while the calls that would trip the breaker are still in flight.
        if breaker.record():
            await self._circuit_opened(policy, ref)
        # Alerts about one pod reach every replica behind the Service, and the dedupe above is per
        # replica: a Lease in our own namespace makes (pod UID, action) one action cluster-wide.
        claim: Claim | None = None
        failure: KubeError | None = None
        try:
            claim = await self._actions.claim(
                ref,
                action.type.value,
                holder=self._identity,
                namespace=self._own_namespace,
                rule=rule.name,
                seconds=policy.dedupe_seconds,
            )
        except KubeError as exc:
            failure = exc
        if failure is not None:
            # Fail closed: without the claim another replica may be acting on this pod right now.
            self.dedupe.forget(key)
            log.error(
                "claim not taken: not acting",
                extra={
                    "namespace": ref.namespace,
                    "pod": ref.name,
                    "pod_uid": ref.uid,
                    "action": action.type.value,
                    "error": str(failure),
                },
            )
            return decided(ERROR, detail=f"claim Lease in {self._own_namespace}: {failure}")
        if claim is None:
            return decided("skipped", Skip.DUPLICATE, "another replica holds the claim")
        result = await self._call(action, ref)
        self._telemetry.action_latency.labels(action.type.value).observe(max(0.0, self._clock() - received))
        if result.outcome in (Outcome.BLOCKED, Outcome.FAILED):
            self.dedupe.forget(key)  # nothing changed: a later alert may try again
            await self._release(claim)
        if result.outcome is Outcome.APPLIED:
            self._rates.record(
                Signal.RESPONSES,
                rule.name,
                alert.priority,
                namespace=ref.namespace,
                pod=ref.name,
                workload=workload,
            )
        return decided(result.outcome.value, detail=result.detail)

    async def _release(self, claim: Claim) -> None:
        if self._actions is None:  # pragma: no cover - only called with a cluster
            return
        try:
            await self._actions.release(claim)
        except KubeError as exc:
            # The claim then simply expires: no replica retries this action before the window ends.
            log.warning("claim not released", extra={"lease": claim.name, "error": str(exc)})

    async def _circuit_opened(self, policy: Policy, ref: PodRef) -> None:
        cfg = policy.circuit_breaker
        log.error(
            "circuit breaker open: enforcement stopped",
            extra={
                "max_actions": cfg.max_actions,
                "window_seconds": cfg.window_seconds,
                "cooldown_seconds": cfg.cooldown_seconds,
            },
        )
        await self._event(
            ref,
            "CircuitOpen",
            "TeflonCircuitOpen",
            f"{cfg.max_actions} actions within {cfg.window_seconds:g}s: teflon stops enforcing for "
            f"{cfg.cooldown_seconds:g}s",
        )

    async def _call(self, action: Action, ref: PodRef) -> ActionResult:
        if self._actions is None:  # pragma: no cover - only called with a cluster
            return ActionResult(Outcome.FAILED, "no cluster")
        try:
            if isinstance(action, LabelAction):
                return await self._actions.label_pod(ref, dict(action.labels))
            if isinstance(action, EvictAction):
                return await self._actions.evict_pod(ref, action.grace_period_seconds)
            if isinstance(action, DeleteAction):
                return await self._actions.delete_pod(ref, action.grace_period_seconds)
            return await self._actions.isolate_pod(ref)
        except KubeError as exc:  # implementations map expected answers; anything else is a failure
            return ActionResult(Outcome.FAILED, str(exc))

    async def _replicas_short(self, policy: Policy, pod: JSON) -> str:
        """Why evicting or deleting ``pod`` would leave its workload under ``minHealthyReplicas``, or ''."""
        ctrl = controller_ref(pod)
        if ctrl is None or self._actions is None or policy.min_healthy_replicas == 0:
            return ""
        namespace = str(pod["metadata"].get("namespace", ""))
        try:
            owner = await self._actions.get_owner(
                namespace,
                str(ctrl.get("apiVersion", "")),
                str(ctrl.get("kind", "")),
                str(ctrl.get("name", "")),
            )
        except KubeError as exc:
            return f"cannot read {ctrl.get('kind')} {ctrl.get('name')}: {exc}"
        if owner is None or "replicas" not in owner.get("spec", {}):
            return ""  # not a replicated workload (a Job, an unknown controller): the guard does not apply
        ready = int(owner.get("status", {}).get("readyReplicas") or 0)
        left = ready - (1 if pod_ready(pod) else 0)
        if left < policy.min_healthy_replicas:
            return (
                f"{ctrl.get('kind')} {ctrl.get('name')} has {ready} ready pods; {left} would be left, "
                f"minHealthyReplicas is {policy.min_healthy_replicas}"
            )
        return ""

    async def _skip_rule(
        self, policy: Policy, rule: Rule, alert: Alert, reason: Skip, detail: str, *, pod: JSON | None = None
    ) -> None:
        mode = effective_mode(policy, rule)
        for action in rule.actions:
            self._count(Decision(alert, rule.name, action.type, mode, "skipped", reason, detail))
        # One line per pod and reason per dedupe window: a noisy pod must not flood the log.
        key = (f"{alert.namespace}/{alert.pod}", f"skip:{reason.value}", mode.value)
        first = self.dedupe.first(key, policy.dedupe_seconds)
        decision = Decision(alert, rule.name, rule.actions[0].type, mode, "skipped", reason, detail)
        log.log(
            logging.INFO if first else logging.DEBUG,
            "response skipped",
            extra=self._fields(decision) | {"actions": [a.type.value for a in rule.actions]},
        )
        # A protected pod that exists gets one Event per window, so `kubectl describe` shows why teflon
        # left it alone; protected namespaces get none (teflon does not write there).
        if first and pod is not None and alert.namespace and alert.pod:
            ref = PodRef(alert.namespace, alert.pod, str(pod.get("metadata", {}).get("uid", "")))
            actions = ", ".join(a.type.value for a in rule.actions)
            note = f"{rule.name}: {actions} skipped: {reason.value} {detail}"
            await self._event(
                ref, "Skip", "TeflonSkipped", note.strip(), warning=reason is Skip.NODE_MISMATCH
            )

    def _count(self, d: Decision) -> None:
        self._telemetry.actions.labels(
            d.action.value, d.result, d.mode.value, self._telemetry.ns(d.alert.namespace)
        ).inc()
        if d.result == "skipped":
            self._telemetry.skips.labels(d.reason).inc()

    @staticmethod
    def _fields(d: Decision) -> dict[str, object]:
        return {
            "namespace": d.alert.namespace,
            "pod": d.alert.pod,
            "pod_uid": d.pod_uid or d.alert.pod_uid,
            "rule": d.alert.rule,
            "policy_rule": d.rule,
            "priority": d.alert.priority.label,
            "action": d.action.value,
            "result": d.result,
            "reason": d.reason or None,
            "dry_run": d.mode is Mode.DRY_RUN,
            "detail": d.detail or None,
            "node": d.alert.hostname,
        }

    async def _record(self, d: Decision, ref: PodRef | None) -> None:
        self._count(d)
        if d.reason == Skip.DEDUPED:
            log.debug("response deduplicated", extra=self._fields(d))
            return
        if d.reason == Skip.DUPLICATE:
            # The claim holder records the decision on the pod; an Event from every replica is noise.
            log.info("response claimed elsewhere", extra=self._fields(d))
            return
        log.info("response decided", extra=self._fields(d))
        if ref is None:
            return
        verb = d.action.value.capitalize()
        if d.result == "dry_run":
            reason, note = "TeflonDryRun", f"would {d.action.value} (dry run)"
        elif d.result == "skipped":
            reason, note = "TeflonSkipped", f"{d.action.value} skipped: {d.reason} {d.detail}".strip()
        else:
            reason, note = (
                f"Teflon{d.result.capitalize()}",
                f"{d.action.value}: {d.result} {d.detail}".strip(),
            )
        node = d.alert.hostname or "an unknown node"
        alert = f"Falco rule {d.alert.rule!r} ({d.alert.priority.label}) on {node}"
        note = f"{note}. {alert}, policy rule {d.rule!r}"
        await self._event(ref, verb, reason, note, warning=d.result != "skipped")

    async def _event(self, ref: PodRef, action: str, reason: str, note: str, *, warning: bool = True) -> None:
        if self._actions is None:
            return
        try:
            await self._actions.record_event(ref, action=action, reason=reason, note=note, warning=warning)
        except KubeError as exc:
            self._telemetry.events_failed.inc()
            log.warning(
                "event not recorded", extra={"namespace": ref.namespace, "pod": ref.name, "error": str(exc)}
            )
