"""Cluster-wide claims: replicas sharing one cluster never act twice on one pod UID and action."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from teflon.common.kube import Forbidden, ServerError, Unreachable
from teflon.webhook.actions import ActionResult, Outcome
from teflon.webhook.alert import Alert
from teflon.webhook.claims import claim_lease, claim_name, lease_expired
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Policy
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.service import WebhookService
from teflon.webhook.telemetry import Telemetry

from .clock import FakeClock
from .conftest import make_settings
from .fakes import FakeActions
from .test_responder import actions_total, alert, policy, skips_total


class Replica:
    """One webhook replica: its own responder, registry and in-memory dedupe, a shared cluster."""

    def __init__(self, name: str, cluster: FakeActions, clock: FakeClock, current: Policy) -> None:
        self.name = name
        self.registry = CollectorRegistry()
        self.responder = Responder(
            policy=lambda: current,
            own_namespace="teflon",
            telemetry=Telemetry(self.registry),
            rates=RateTracker(max_tracked=100, ttl_seconds=900),
            actions=cluster,
            identity=name,
            clock=clock,
        )
        self.clock = clock

    async def send(self, a: Alert) -> None:
        await self.responder.handle(a, self.clock())

    def count(self, **labels: str) -> float:
        return actions_total(self.registry, **labels)

    def skips(self, reason: str) -> float:
        return skips_total(self.registry, reason)


def replicas(current: Policy, count: int = 2) -> tuple[FakeActions, FakeClock, list[Replica]]:
    cluster = FakeActions()
    cluster.replicaset("shop", "web-5d8f")
    cluster.add_pod("shop", "web-1")
    clock = FakeClock()
    cluster.leases.clock = clock
    return cluster, clock, [Replica(f"teflon-webhook-{i}", cluster, clock, current) for i in range(count)]


LABEL_ONLY: list[dict[str, Any]] = [{"type": "label"}]


async def test_two_replicas_racing_on_one_pod_act_once_and_the_other_counts_a_duplicate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    cluster, _clock, (a, b) = replicas(policy(actions=LABEL_ONLY))
    await asyncio.gather(a.send(alert()), b.send(alert()))
    assert cluster.actions_called() == ["label"]
    assert a.count(result="applied") + b.count(result="applied") == 1
    assert a.skips("duplicate") + b.skips("duplicate") == 1
    assert sorted(result for _holder, _name, result in cluster.claims) == ["claimed", "held"]
    assert [e["reason"] for e in cluster.events] == ["TeflonApplied"]  # the loser adds no Event
    assert [rec for rec in caplog.records if rec.getMessage() == "response claimed elsewhere"]


async def test_every_action_of_a_rule_is_taken_once_across_three_replicas() -> None:
    cluster, _clock, reps = replicas(policy(), count=3)
    for _ in range(4):
        await asyncio.gather(*(r.send(alert()) for r in reps))
    assert sorted(cluster.actions_called()) == ["delete", "evict", "isolate", "label"]


async def test_a_replica_that_already_acted_does_not_act_again_once_its_memory_forgets() -> None:
    cluster, _clock, (a, _b) = replicas(policy(actions=LABEL_ONLY))
    await a.send(alert())
    a.responder.dedupe = type(a.responder.dedupe)(a.clock)  # a restarted replica: empty memory
    await a.send(alert())
    assert cluster.actions_called() == ["label"]
    assert a.skips("duplicate") == 1


async def test_an_expired_claim_is_taken_again_by_exactly_one_replica() -> None:
    cluster, clock, (a, b) = replicas(policy(actions=LABEL_ONLY))
    await a.send(alert())
    clock.advance(299)
    await asyncio.gather(a.send(alert()), b.send(alert()))
    assert cluster.actions_called() == ["label"]
    clock.advance(2)
    await asyncio.gather(a.send(alert()), b.send(alert()))
    assert cluster.actions_called() == ["label", "label"]
    assert a.count(result="applied") + b.count(result="applied") == 2


@pytest.mark.parametrize(
    "failure",
    [Unreachable("connection refused"), ServerError("etcd timeout", status=500), Forbidden("no", status=403)],
)
async def test_when_the_claim_cannot_be_taken_nothing_is_done_and_an_error_is_recorded(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _clock, (a,) = replicas(policy(), count=1)
    cluster.leases.failure = failure  # type: ignore[assignment]
    await a.send(alert())
    assert cluster.calls == []
    assert a.count(action="label", result="error", mode="enforce") == 1
    assert a.count(result="applied") == 0
    assert [e["reason"] for e in cluster.events] == ["TeflonError"]  # the list stopped at the first action
    (line,) = [rec for rec in caplog.records if rec.getMessage() == "claim not taken: not acting"]
    assert line.levelno == logging.ERROR
    cluster.leases.failure = None
    await a.send(alert())  # nothing was done, so the next alert may try again
    assert cluster.actions_called() == ["label", "isolate", "evict", "delete"]


async def test_dry_run_takes_no_claim() -> None:
    cluster, _clock, (a, b) = replicas(policy(mode="dryRun"))
    await asyncio.gather(a.send(alert()), b.send(alert()))
    assert cluster.claims == []
    assert cluster.leases.items == {}
    assert a.count(result="dry_run") == 4


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.BLOCKED])
async def test_an_action_that_changed_nothing_gives_its_claim_back_for_another_replica(
    outcome: Outcome,
) -> None:
    cluster, _clock, (a, b) = replicas(policy(actions=LABEL_ONLY))
    cluster.outcomes["label"] = ActionResult(outcome, "x")
    await a.send(alert())
    assert cluster.leases.items == {}
    del cluster.outcomes["label"]
    await b.send(alert())
    assert cluster.actions_called() == ["label", "label"]
    assert b.count(result="applied") == 1


async def test_the_sweep_deletes_expired_claims_only_in_enforce_mode_and_survives_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster, clock, (a,) = replicas(policy(actions=LABEL_ONLY), count=1)
    await a.send(alert())
    service = WebhookService(make_settings(), telemetry=Telemetry(CollectorRegistry()), actions=cluster)
    service.policies.policy = policy(actions=LABEL_ONLY)
    await service.sweep_claims()
    assert len(cluster.leases.items) == 1  # still within its duration
    clock.advance(301)
    service.policies.policy = policy(mode="dryRun", actions=LABEL_ONLY)
    await service.sweep_claims()
    assert len(cluster.leases.items) == 1  # dry run manages no claims (and may lack the RBAC to)
    service.policies.policy = policy(actions=LABEL_ONLY)
    await service.sweep_claims()
    assert cluster.leases.items == {}

    async def broken(namespace: str) -> int:
        raise Forbidden("leases is forbidden", status=403)

    cluster.sweep_claims = broken  # type: ignore[method-assign]
    await service.sweep_claims()
    assert [rec for rec in caplog.records if rec.getMessage() == "claim sweep failed"]


def test_claim_names_are_short_dns_labels_one_per_uid_and_action() -> None:
    uid = "0f8e6bb4-2d0c-4c7a-9d51-3b7f0e6c1a22"
    assert claim_name(uid, "isolate") == f"teflon-isolate-{uid}"
    assert claim_name(uid, "label") != claim_name(uid, "delete")
    odd = claim_name("Not/A-UID" * 20, "delete")
    assert len(odd) <= 63
    assert odd.startswith("teflon-delete-")
    assert odd == odd.lower()


def test_a_claim_lease_carries_holder_window_micro_times_and_what_it_is_about() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    lease = claim_lease(
        PodRef("shop", "web-1", "u-1"),
        "label",
        holder="teflon-webhook-0",
        namespace="teflon",
        rule="shells",
        seconds=300.5,
        now=now,
    )
    assert lease["metadata"]["namespace"] == "teflon"
    labels = lease["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "teflon", "teflon.io/claim": "true"}
    assert lease["metadata"]["annotations"]["teflon.io/pod"] == "web-1"
    assert lease["metadata"]["annotations"]["teflon.io/rule"] == "shells"
    assert lease["spec"] == {
        "holderIdentity": "teflon-webhook-0",
        "leaseDurationSeconds": 301,
        "acquireTime": "2026-01-02T03:04:05.000000Z",
        "renewTime": "2026-01-02T03:04:05.000000Z",
    }
    assert not lease_expired(lease, datetime(2026, 1, 2, 3, 9, 5, tzinfo=UTC))
    assert lease_expired(lease, datetime(2026, 1, 2, 3, 9, 7, tzinfo=UTC))
    assert lease_expired({"spec": {"renewTime": "garbage"}}, now)
