"""Properties of the quarantine keeper under any mix of records, pods, requests and clocks.

Whatever records exist in teflon's namespace (written by teflon, forged by anyone who may write Leases
there, stale after a pod was replaced) and whenever the sweep runs, a pod is deleted only if it is the
exact pod (UID) a record names, teflon's quarantine marks are on it, it is outside the protected
namespaces, and the record is due (TTL passed, or release asked); every delete carries that UID.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from teflon.webhook.keeper import sweep_quarantines
from teflon.webhook.objects import PodRef
from teflon.webhook.quarantine import (
    AT,
    EXPIRES,
    EXTEND_REQUEST,
    QUARANTINE_LABEL,
    RELEASE_REQUEST,
    record_lease,
    stamp,
)
from tests.webhook.fakes import FakeActions
from tests.webhook.test_quarantine import order

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PROTECTED = {"kube-system", "teflon"}

POD = st.fixed_dictionaries(
    {
        "namespace": st.sampled_from(["shop", "prod", "kube-system", "teflon"]),
        "label": st.booleans(),  # carries teflon.io/quarantined=true
        "at": st.sampled_from(["match", "other", "none"]),  # teflon.io/quarantined-at vs the record's
        "record": st.sampled_from(["same-uid", "old-uid", "none"]),
        "ttl": st.integers(min_value=60, max_value=7200),
        "request": st.sampled_from([None, "release", "extend", "extend-bad"]),
    }
)


def _setup(fake: FakeActions, i: int, spec: dict[str, Any]) -> tuple[PodRef, bool]:
    """Put one pod (and maybe its record) in ``fake``; True when teflon quarantined exactly this pod."""
    notes: dict[str, str] = {}
    if spec["at"] != "none":
        notes[AT] = stamp(T0 if spec["at"] == "match" else T0 - timedelta(hours=1))
        notes[EXPIRES] = stamp(T0 + timedelta(seconds=spec["ttl"]))
    labels = {QUARANTINE_LABEL: "true"} if spec["label"] else {"app": "web"}
    pod = fake.add_pod(spec["namespace"], f"web-{i}", owner=None, labels=labels, annotations=notes or None)
    ref = PodRef(spec["namespace"], f"web-{i}", pod["metadata"]["uid"])
    if spec["record"] == "none":
        return ref, False
    named = ref if spec["record"] == "same-uid" else PodRef(ref.namespace, ref.name, f"old-{i}")
    lease = record_lease(order(named, ttl=spec["ttl"]), namespace="teflon", holder="h")
    lease["metadata"]["resourceVersion"] = "1"
    request = spec["request"]
    if request == "release":
        lease["metadata"]["annotations"][RELEASE_REQUEST] = "true"
    elif request == "extend":
        lease["metadata"]["annotations"][EXTEND_REQUEST] = "600"
    elif request == "extend-bad":
        lease["metadata"]["annotations"][EXTEND_REQUEST] = "-1"
    fake.records[("teflon", lease["metadata"]["name"])] = lease
    ours = spec["record"] == "same-uid" and spec["label"] and spec["at"] == "match"
    return ref, ours and spec["namespace"] not in PROTECTED


@settings(max_examples=200, deadline=None)
@given(
    pods=st.lists(POD, min_size=1, max_size=8),
    sweeps=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5),
)
def test_the_ttl_sweep_deletes_only_pods_teflon_quarantined_and_only_when_due(
    pods: list[dict[str, Any]], sweeps: list[int]
) -> None:
    fake = FakeActions()
    setup = [_setup(fake, i, spec) for i, spec in enumerate(pods)]
    ours = {ref.uid for ref, mine in setup if mine}

    async def run() -> None:
        for seconds in sorted(sweeps):
            before = len(fake.calls)
            await sweep_quarantines(
                fake, "teflon", T0 + timedelta(seconds=seconds), protected=lambda ns: ns in PROTECTED
            )
            for name, ref, _arg in fake.calls[before:]:
                if name != "delete":
                    continue
                assert ref.uid in ours, f"deleted {ref} which teflon did not quarantine"
                current = fake.pods[(ref.namespace, ref.name)]
                assert current["metadata"]["uid"] == ref.uid, "a delete without the pod's own UID"
                spec = pods[int(ref.name.split("-")[1])]
                due = spec["request"] == "release" or seconds >= spec["ttl"]
                assert due, f"deleted {ref} before its TTL without a release request"

    asyncio.run(run())
    deleted = [ref.uid for name, ref, _ in fake.calls if name == "delete"]
    assert len(deleted) == len(set(deleted)), "one pod deleted twice"
