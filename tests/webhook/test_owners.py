"""Resolving a pod to its workload through ownerReferences, with a cache."""

from __future__ import annotations

import asyncio

import pytest

from teflon.webhook.owners import OwnerResolver
from teflon.webhook.rates import Workload

from .clock import FakeClock
from .fakes import FakeActions


def owner(kind: str, name: str, parent: tuple[str, str, str] | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if parent:
        api_version, pkind, pname = parent
        meta["ownerReferences"] = [
            {"apiVersion": api_version, "kind": pkind, "name": pname, "controller": True}
        ]
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("pod_owner", "owners", "expected"),
    [
        (
            ("apps/v1", "ReplicaSet", "web-5d8f"),
            {"web-5d8f": ("apps/v1", "Deployment", "web")},
            Workload("Deployment", "web"),
        ),
        (("apps/v1", "ReplicaSet", "solo-1"), {"solo-1": None}, Workload("ReplicaSet", "solo-1")),
        (
            ("batch/v1", "Job", "report-29"),
            {"report-29": ("batch/v1", "CronJob", "report")},
            Workload("CronJob", "report"),
        ),
        (("batch/v1", "Job", "once"), {"once": None}, Workload("Job", "once")),
        (("apps/v1", "StatefulSet", "db"), {}, Workload("StatefulSet", "db")),
        (("apps/v1", "DaemonSet", "agent"), {}, Workload("DaemonSet", "agent")),
        (("example.com/v1", "Widget", "w"), {}, Workload("Widget", "w")),
        (None, {}, None),
    ],
)
async def test_pods_resolve_to_their_top_level_workload(
    pod_owner: tuple[str, str, str] | None,
    owners: dict[str, tuple[str, str, str] | None],
    expected: Workload | None,
) -> None:
    fake = FakeActions()
    for name, parent in owners.items():
        assert pod_owner is not None, "owners only come with a pod that has an owner"
        kind = pod_owner[1]
        fake.add_owner("ns", kind, name, owner(kind, name, parent))
    fake.add_pod("ns", "p", owner=pod_owner)
    assert await OwnerResolver(fake).workload_of_pod_name("ns", "p") == expected


async def test_a_replicaset_that_vanished_still_names_the_replicaset() -> None:
    fake = FakeActions()
    fake.add_pod("ns", "p", owner=("apps/v1", "ReplicaSet", "gone"))
    assert await OwnerResolver(fake).workload_of_pod_name("ns", "p") == Workload("ReplicaSet", "gone")


async def test_lookups_are_cached_and_concurrent_ones_share_a_request() -> None:
    clock = FakeClock()
    fake = FakeActions()
    fake.replicaset("ns", "web-5d8f")
    fake.add_pod("ns", "p")
    resolver = OwnerResolver(fake, pod_ttl_seconds=60, clock=clock)
    results = await asyncio.gather(*(resolver.workload_of_pod_name("ns", "p") for _ in range(20)))
    assert set(results) == {Workload("Deployment", "web")}
    assert fake.pod_gets == 1
    clock.advance(61)
    await resolver.workload_of_pod_name("ns", "p")
    assert fake.pod_gets == 2


async def test_an_unknown_pod_and_a_failing_api_give_no_workload() -> None:
    fake = FakeActions()
    resolver = OwnerResolver(fake)
    assert await resolver.workload_of_pod_name("ns", "missing") is None
    fake.fail_pod_get = True
    assert await resolver.workload_of_pod_name("ns", "other") is None
