"""Keeps quarantined pods for their TTL, then deletes them; carries out admins' release and extend.

Runs from the service's housekeeping on every replica. A pod is deleted only when all of these hold:
its record (a Lease in teflon's namespace) is due, the pod still has the record's UID (the delete
carries it as a precondition), it is not in a protected namespace, and it carries the marks teflon's
quarantine wrote (the label and the same quarantine time). A record alone, written by anyone who may
write Leases in teflon's namespace, can therefore never get an unquarantined pod deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from teflon.common.kube import JSON, KubeError
from teflon.webhook.actions import EventRecorder, Outcome, PodReader, PodResponder, QuarantineStore
from teflon.webhook.objects import PodView
from teflon.webhook.quarantine import (
    AT,
    QUARANTINE_LABEL,
    Due,
    Record,
    due,
    extend_patch,
    extended,
    reject_patch,
    stamp,
)

log = logging.getLogger(__name__)


class Keeper(QuarantineStore, PodReader, PodResponder, EventRecorder, Protocol):
    """The roles the keeper needs."""


@dataclass(frozen=True)
class Swept:
    """What one sweep did with one record (for logs and tests)."""

    record: str
    due: Due
    outcome: str


def quarantined_by_teflon(pod: JSON, record: Record) -> bool:
    """Whether ``pod`` is the pod ``record`` names and carries the marks teflon's quarantine wrote."""
    view = PodView.parse(pod)
    return (
        view.uid == record.pod.uid
        and view.labels.get(QUARANTINE_LABEL) == "true"
        and record.at is not None
        and view.annotations.get(AT) == stamp(record.at)
    )


async def sweep_quarantines(
    cluster: Keeper,
    namespace: str,
    now: datetime,
    *,
    protected: Callable[[str], bool],
) -> list[Swept]:
    """One pass over the records in ``namespace``; raises ``KubeError`` only when they cannot be listed."""
    done: list[Swept] = []
    for lease in await cluster.quarantine_records(namespace):
        record = Record.parse(lease)
        if record is None:
            continue
        decision = due(record, now)
        if decision is Due.KEEP:
            continue
        try:
            outcome = await _carry_out(cluster, namespace, record, decision, now=now, protected=protected)
        except KubeError as exc:
            outcome = f"failed: {exc}"
            log.warning("quarantine sweep step failed", extra={"record": record.name, "error": str(exc)})
        done.append(Swept(record.name, decision, outcome))
    return done


async def _carry_out(
    cluster: Keeper,
    namespace: str,
    record: Record,
    decision: Due,
    *,
    now: datetime,
    protected: Callable[[str], bool],
) -> str:
    ref = record.pod
    match decision:
        case Due.EXTEND:
            seconds = record.extend_seconds or 0
            expires, capped = extended(record, seconds, now)
            if not await cluster.patch_record(namespace, record.name, extend_patch(record, expires)):
                return "raced"
            await cluster.mark_expiry(ref.namespace, ref.name, ref.uid, stamp(expires))
            note = f"quarantine extended by {seconds}s: kept until {stamp(expires)}"
            if capped:
                note += " (cut at the 30-day ceiling)"
            await _event(cluster, record, "Extend", "TeflonQuarantineExtended", note, warning=False)
            return "extended"
        case Due.REJECT:
            if not await cluster.patch_record(namespace, record.name, reject_patch(record)):
                return "raced"
            await _event(cluster, record, "Extend", "TeflonQuarantineRequestRejected", record.bad_request)
            return "rejected"
        case Due.EXPIRE | Due.RELEASE:
            return await _delete(cluster, namespace, record, decision, protected)
        case Due.KEEP:
            return "kept"


async def _delete(
    cluster: Keeper, namespace: str, record: Record, decision: Due, protected: Callable[[str], bool]
) -> str:
    ref = record.pod
    pod = await cluster.get_pod(ref.namespace, ref.name)
    if pod is None or PodView.parse(pod).uid != ref.uid:
        await cluster.delete_record(namespace, record.name, record.resource_version)
        return "pod gone"
    if protected(ref.namespace) or not quarantined_by_teflon(pod, record):
        # Never delete on a record's word alone: the pod must carry teflon's own quarantine marks.
        log.warning(
            "quarantine record names a pod teflon did not quarantine; record dropped, pod kept",
            extra={"record": record.name, "namespace": ref.namespace, "pod": ref.name, "pod_uid": ref.uid},
        )
        await cluster.delete_record(namespace, record.name, record.resource_version)
        return "not ours"
    result = await cluster.delete_pod(ref, None)
    if result.outcome not in (Outcome.APPLIED, Outcome.GONE, Outcome.REPLACED):
        return f"delete {result.outcome.value}: {result.detail}"
    await cluster.delete_record(namespace, record.name, record.resource_version)
    if result.outcome is Outcome.APPLIED:
        if decision is Due.RELEASE:
            reason, note = "TeflonQuarantineReleased", "quarantine released on request: pod deleted"
        else:
            reason, note = "TeflonQuarantineExpired", "quarantine TTL reached: pod deleted"
        await _event(cluster, record, "Delete", reason, note, warning=False)
    return result.outcome.value


async def _event(
    cluster: Keeper, record: Record, action: str, reason: str, note: str, *, warning: bool = True
) -> None:
    try:
        await cluster.record_event(record.pod, action=action, reason=reason, note=note, warning=warning)
    except KubeError as exc:
        log.warning("event not recorded", extra={"record": record.name, "error": str(exc)})
    log.info(note, extra={"record": record.name, "namespace": record.pod.namespace, "pod": record.pod.name})
