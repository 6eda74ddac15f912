"""What the responder decides, as pure functions over typed values: no I/O, table-testable.

Which protection forbids touching a pod, whether an action would leave a workload short of ready
replicas, whether a decision ends the rule's action list, and what a decision says in its log line,
counter and Event. ``Responder`` gathers the inputs and carries the decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from teflon.webhook.alert import Alert
from teflon.webhook.objects import PodView, ReplicaCount
from teflon.webhook.policy import ActionType, Mode, Policy
from teflon.webhook.quarantine import AT as QUARANTINED_AT


class Result(StrEnum):
    """What became of one action (``teflon_webhook_actions_total{result}``).

    The first five are what the API call did (``teflon.webhook.actions.Outcome``); ``skipped`` names a
    ``Skip`` reason; ``dry_run`` is what enforce mode would have done; ``error`` means the claim could
    not be taken, so nothing was done.
    """

    APPLIED = "applied"
    GONE = "gone"
    REPLACED = "replaced"
    BLOCKED = "blocked"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"
    ERROR = "error"


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
    QUARANTINED = "quarantined"  # kept for forensics: no further action until its TTL


# Results that end the rule's action list for this pod: it is gone, replaced, or the step did not happen.
_STOP = frozenset({Result.GONE, Result.REPLACED, Result.BLOCKED, Result.FAILED, Result.ERROR})


@dataclass(frozen=True)
class Decision:
    """One action's fate for one pod: what the log line, the counter and the Event say."""

    alert: Alert
    rule: str
    action: ActionType
    mode: Mode
    result: Result
    reason: Skip | None = None
    detail: str = ""
    pod_uid: str = ""

    @property
    def stops(self) -> bool:
        """Whether the rule's later actions are left undone for this pod.

        A duplicate stops the list too: the replica holding the claim walks the rest of it.
        """
        if self.result is Result.SKIPPED:
            return self.reason is not Skip.DEDUPED
        return self.result in _STOP

    def fields(self) -> dict[str, object]:
        """The structured fields of the decision's log line."""
        return {
            "namespace": self.alert.namespace,
            "pod": self.alert.pod,
            "pod_uid": self.pod_uid or self.alert.pod_uid,
            "rule": self.alert.rule,
            "policy_rule": self.rule,
            "priority": self.alert.priority.label,
            "action": self.action.value,
            "result": self.result.value,
            "reason": self.reason.value if self.reason is not None else None,
            "dry_run": self.mode is Mode.DRY_RUN,
            "detail": self.detail or None,
            "node": self.alert.hostname,
        }


@dataclass(frozen=True)
class EventText:
    action: str
    reason: str
    note: str
    warning: bool


def event_text(d: Decision) -> EventText:
    """The Event recorded on the pod for decision ``d``."""
    action = d.action.value
    if d.result is Result.DRY_RUN:
        reason, note = "TeflonDryRun", f"would {action} (dry run)"
    elif d.result is Result.SKIPPED:
        why = d.reason.value if d.reason is not None else ""
        reason, note = "TeflonSkipped", f"{action} skipped: {why} {d.detail}".strip()
    else:
        reason, note = (
            f"Teflon{d.result.value.capitalize()}",
            f"{action}: {d.result.value} {d.detail}".strip(),
        )
    node = d.alert.hostname or "an unknown node"
    about = f"Falco rule {d.alert.rule!r} ({d.alert.priority.label}) on {node}"
    return EventText(
        action.capitalize(),
        reason,
        f"{note}. {about}, policy rule {d.rule!r}",
        d.result is not Result.SKIPPED,
    )


def protection_for(policy: Policy, alert: Alert, pod: PodView) -> Skip | None:
    """The protection that forbids touching ``pod`` for ``alert``, if any. No rule overrides it."""
    if pod.labels.get(policy.opt_out_label) == "true":
        return Skip.OPTED_OUT
    if QUARANTINED_AT in pod.annotations:
        return Skip.QUARANTINED
    if pod.static:
        return Skip.STATIC_POD
    ctrl = pod.controller
    if ctrl is not None and ctrl.kind == "DaemonSet":
        return Skip.DAEMONSET_POD
    if ctrl is None and not policy.allow_bare_pods:
        return Skip.BARE_POD
    if alert.pod_uid is not None and pod.uid != alert.pod_uid:
        return Skip.POD_REPLACED
    if policy.node_check and pod.node != alert.hostname:
        return Skip.NODE_MISMATCH
    return None


def removes_pod(action: ActionType) -> bool:
    """Whether ``action`` takes the pod out of its workload (and so needs ``minHealthyReplicas``)."""
    match action:
        case ActionType.EVICT | ActionType.DELETE | ActionType.QUARANTINE:
            # A quarantined pod leaves its workload at once; its replacement is not ready yet.
            return True
        case ActionType.LABEL | ActionType.ISOLATE:
            return False
        case _:
            assert_never(action)


def replicas_short(policy: Policy, pod: PodView, owner: ReplicaCount | None) -> str:
    """Why removing ``pod`` would leave its workload under ``minHealthyReplicas``, or ''.

    ``owner`` is what the pod's controller says; None when it is gone or of a kind teflon does not read.
    A controller without replicas (a Job) is not guarded.
    """
    ctrl = pod.controller
    if ctrl is None or owner is None or not owner.replicated:
        return ""
    left = owner.ready - (1 if pod.ready else 0)
    if left < policy.min_healthy_replicas:
        return (
            f"{ctrl.kind} {ctrl.name} has {owner.ready} ready pods; {left} would be left, "
            f"minHealthyReplicas is {policy.min_healthy_replicas}"
        )
    return ""
