"""Quarantine-and-replace, as pure functions: the plan per controller, the pod patch, the record.

A quarantined pod leaves its ReplicaSet and its Services at once (the labels the ReplicaSet selects on
are removed, so the controller orphans it and starts a replacement, and the Services' EndpointSlices
drop it), is isolated by the pod-scoped NetworkPolicy, and is kept for forensics until its TTL, then
deleted. The record of a quarantine is a Lease in teflon's own namespace, one per pod UID: creating it
is atomic, so a pod is quarantined at most once, and the TTL sweep deletes only pods named by such a
record, with the record's UID as the delete precondition.

Admins act on a quarantine by annotating its record (``kubectl teflon quarantine release|extend``):
the record lives in teflon's namespace, so the API server's RBAC on Leases there is what proves the
request was allowed; nothing a workload can write (its own pod's annotations) is ever honoured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from teflon.webhook.objects import ACTED_ANNOTATION, JSON, OwnerRef, PodRef
from teflon.webhook.policy import MAX_QUARANTINE_SECONDS, QuarantineAction

QUARANTINE_LABEL = "teflon.io/quarantined"
RECORD_LABEL = "teflon.io/quarantine"
# On the pod: what it is kept for, readable with `kubectl describe pod`.
AT = ACTED_ANNOTATION
EXPIRES = "teflon.io/quarantine-expires"
REASON = "teflon.io/quarantine-reason"
RULE = "teflon.io/quarantine-rule"
ALERT = "teflon.io/quarantine-alert"
REMOVED_LABELS = "teflon.io/quarantine-removed-labels"
# On the record: what it is about, and the requests an admin may write.
POD_NAMESPACE = "teflon.io/pod-namespace"
POD_NAME = "teflon.io/pod"
POD_UID = "teflon.io/pod-uid"
RELEASE_REQUEST = "teflon.io/release"
EXTEND_REQUEST = "teflon.io/extend-seconds"


class Plan(StrEnum):
    """What quarantine does to a pod, by its controller."""

    REPLACE = "replace"  # detach from the ReplicaSet: a replacement starts, this pod is kept
    ISOLATE = "isolate"  # cannot be replaced while kept: isolated in place
    DELETE = "delete"  # StatefulSet with stateful_set_fallback: delete


def plan_for(controller: OwnerRef | None, action: QuarantineAction) -> tuple[Plan, str]:
    """The plan for a pod of ``controller``, and why, when it is not the replacement."""
    kind = controller.kind if controller is not None else ""
    if kind == "ReplicaSet":
        return Plan.REPLACE, ""
    if kind == "StatefulSet":
        fallback = Plan(action.stateful_set_fallback)
        why = (
            f"a StatefulSet pod cannot be replaced under its name while it is kept: {fallback.value} instead"
        )
        return fallback, why
    return Plan.ISOLATE, f"a {kind or 'bare'} pod has no replacing controller: isolate instead"


@dataclass(frozen=True)
class QuarantineOrder:
    """One quarantine to carry out: the pod, why, and until when."""

    pod: PodRef
    plan: Plan
    controller: OwnerRef | None
    rule: str
    alert_rule: str
    alert_priority: str
    alert_output: str
    at: datetime
    ttl_seconds: int
    record_namespace: str  # teflon's own namespace, where the record is kept
    holder: str  # the replica writing the record
    fallback_reason: str = ""

    @property
    def expires(self) -> datetime:
        return self.at + timedelta(seconds=self.ttl_seconds)


def stamp(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def selector_keys(owner: JSON | None) -> list[str]:
    """The label keys the owner's ``spec.selector`` requires: removing any one orphans the pod."""
    selector = ((owner or {}).get("spec") or {}).get("selector") or {}
    keys = list((selector.get("matchLabels") or {}).keys())
    for req in selector.get("matchExpressions") or []:
        if req.get("operator") in ("In", "Exists") and req.get("key") not in keys:
            keys.append(str(req.get("key")))
    return keys


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def pod_annotations(order: QuarantineOrder, removed: dict[str, str]) -> dict[str, str]:
    return {
        AT: stamp(order.at),
        EXPIRES: stamp(order.expires),
        REASON: f"Falco rule {order.alert_rule!r} ({order.alert_priority})"[:1024],
        RULE: order.rule,
        ALERT: order.alert_output[:4096],
        REMOVED_LABELS: json.dumps(removed, sort_keys=True),
    }


def detach_patch(pod: JSON, order: QuarantineOrder, keys: list[str]) -> tuple[list[JSON], dict[str, str]]:
    """A JSON patch removing the selector ``keys`` and marking the pod; refused unless the UID holds.

    Returns the patch and the labels it removes (kept in an annotation for forensics). A selector
    label the pod lacks cannot be removed; ``keys`` lists only those it has.
    """
    meta = pod.get("metadata") or {}
    labels: dict[str, str] = dict(meta.get("labels") or {})
    removed = {k: labels[k] for k in keys if k in labels}
    ops: list[JSON] = [{"op": "test", "path": "/metadata/uid", "value": order.pod.uid}]
    ops += [{"op": "remove", "path": f"/metadata/labels/{_escape(k)}"} for k in removed]
    if not labels:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    ops.append({"op": "add", "path": f"/metadata/labels/{_escape(QUARANTINE_LABEL)}", "value": "true"})
    if not meta.get("annotations"):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    for key, value in pod_annotations(order, removed).items():
        ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
    return ops, removed


def record_name(pod_uid: str) -> str:
    """The record's name; never a claim's (``teflon-quarantine-<uid>`` is the quarantine action's claim)."""
    return f"teflon-quarantined-{pod_uid}"[:253]


def record_lease(order: QuarantineOrder, *, namespace: str, holder: str) -> JSON:
    """The quarantine's record: a Lease in teflon's namespace whose creation claims the pod UID."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": record_name(order.pod.uid),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "teflon", RECORD_LABEL: "true"},
            "annotations": {
                POD_NAMESPACE: order.pod.namespace,
                POD_NAME: order.pod.name,
                POD_UID: order.pod.uid,
                RULE: order.rule,
                REASON: f"Falco rule {order.alert_rule!r} ({order.alert_priority})"[:1024],
                AT: stamp(order.at),
                EXPIRES: stamp(order.expires),
            },
        },
        "spec": {
            "holderIdentity": holder[:128],
            "leaseDurationSeconds": max(1, min(order.ttl_seconds, 2**31 - 1)),
        },
    }


@dataclass(frozen=True)
class Record:
    """A quarantine record as read back: which pod, until when, and what an admin asked for."""

    name: str
    resource_version: str
    pod: PodRef
    at: datetime | None
    expires: datetime | None
    release: bool
    extend_seconds: int | None
    bad_request: str = ""

    @classmethod
    def parse(cls, lease: JSON) -> Record | None:
        """The record, or None when the Lease is not a well-formed quarantine record."""
        meta = lease.get("metadata") or {}
        notes: dict[str, Any] = meta.get("annotations") or {}
        if (meta.get("labels") or {}).get(RECORD_LABEL) != "true":
            return None
        ns, name, uid = notes.get(POD_NAMESPACE), notes.get(POD_NAME), notes.get(POD_UID)
        if not (ns and name and uid) or meta.get("name") != record_name(str(uid)):
            return None
        extend: int | None = None
        bad = ""
        raw = notes.get(EXTEND_REQUEST)
        if raw is not None:
            try:
                extend = int(str(raw))
            except ValueError:
                bad = f"{EXTEND_REQUEST}={raw!r} is not a whole number of seconds"
            else:
                if extend <= 0:
                    extend, bad = None, f"{EXTEND_REQUEST}={raw!r} must be positive"
        return cls(
            name=str(meta.get("name")),
            resource_version=str(meta.get("resourceVersion", "")),
            pod=PodRef(str(ns), str(name), str(uid)),
            at=parse_stamp(str(notes.get(AT, ""))),
            expires=parse_stamp(str(notes.get(EXPIRES, ""))),
            release=str(notes.get(RELEASE_REQUEST, "")).lower() in ("true", "yes", "1"),
            extend_seconds=extend,
            bad_request=bad,
        )


class Due(StrEnum):
    """What the sweep does with a record now."""

    KEEP = "keep"
    EXPIRE = "expire"  # TTL passed: delete the pod
    RELEASE = "release"  # an admin asked: delete the pod now
    EXTEND = "extend"  # an admin asked for more time
    REJECT = "reject"  # an admin's request could not be read: say so, keep the pod


def due(record: Record, now: datetime) -> Due:
    """The sweep's decision for ``record`` at ``now``; a record without an expiry expires now."""
    if record.release:
        return Due.RELEASE
    if record.bad_request:
        return Due.REJECT
    if record.extend_seconds is not None:
        return Due.EXTEND
    if record.expires is None or now >= record.expires:
        return Due.EXPIRE
    return Due.KEEP


def extended(record: Record, seconds: int, now: datetime) -> tuple[datetime, bool]:
    """The new expiry after extending by ``seconds``, and whether the ceiling cut it short.

    A quarantine is never kept past ``MAX_QUARANTINE_SECONDS`` from when it began.
    """
    start = record.at or now
    current = record.expires if record.expires is not None else now
    wanted = max(current, now) + timedelta(seconds=seconds)
    ceiling = start + timedelta(seconds=MAX_QUARANTINE_SECONDS)
    return (min(wanted, ceiling), wanted > ceiling)


def extend_patch(record: Record, expires: datetime) -> list[JSON]:
    """Set the record's expiry and consume the request; the resourceVersion test makes one replica win."""
    ttl = math.ceil((expires - (record.at or expires)).total_seconds())
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": record.resource_version},
        {"op": "replace", "path": f"/metadata/annotations/{_escape(EXPIRES)}", "value": stamp(expires)},
        {"op": "remove", "path": f"/metadata/annotations/{_escape(EXTEND_REQUEST)}"},
        {"op": "replace", "path": "/spec/leaseDurationSeconds", "value": max(1, min(ttl, 2**31 - 1))},
    ]


def reject_patch(record: Record) -> list[JSON]:
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": record.resource_version},
        {"op": "remove", "path": f"/metadata/annotations/{_escape(EXTEND_REQUEST)}"},
    ]
