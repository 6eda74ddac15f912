"""The shared Kubernetes helpers: one table of resource paths, and the two named retry policies."""

from __future__ import annotations

import pytest

from teflon.common.kube import (
    READS,
    RESOURCES,
    WRITES,
    BadRequest,
    KubeError,
    Retrier,
    RetryPolicy,
    ServerError,
    TooManyRequests,
    Unreachable,
    resource_of,
)


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "path"),
    [
        ("Pod", "shop", "web-1", "/api/v1/namespaces/shop/pods/web-1"),
        ("Pod", "shop", None, "/api/v1/namespaces/shop/pods"),
        ("Node", None, "n1", "/api/v1/nodes/n1"),
        ("ReplicaSet", "shop", "web", "/apis/apps/v1/namespaces/shop/replicasets/web"),
        ("Lease", "teflon", None, "/apis/coordination.k8s.io/v1/namespaces/teflon/leases"),
        ("Event", "shop", None, "/apis/events.k8s.io/v1/namespaces/shop/events"),
    ],
)
def test_resource_paths_come_from_one_table(
    kind: str, namespace: str | None, name: str | None, path: str
) -> None:
    assert RESOURCES[kind].path(namespace, name) == path


def test_a_resource_is_found_only_at_its_served_api_version() -> None:
    assert resource_of("apps/v1", "Deployment") is RESOURCES["Deployment"]
    assert resource_of("extensions/v1beta1", "Deployment") is None
    assert resource_of("v1", "Unknown") is None


def test_reads_retry_throttling_and_writes_do_not() -> None:
    assert set(READS.retry_on) == {Unreachable, ServerError, TooManyRequests}
    assert set(WRITES.retry_on) == {Unreachable, ServerError}


async def test_a_retried_call_stops_at_the_first_success_and_gives_up_after_its_attempts() -> None:
    retry = Retrier(attempts=3, backoff_seconds=0.0)
    errors: list[KubeError] = [ServerError("boom"), Unreachable("gone")]

    async def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert await retry(flaky, WRITES) == "ok"
    calls = 0

    async def always(exc: KubeError) -> str:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(TooManyRequests):
        await retry(lambda: always(TooManyRequests("slow")), READS)
    assert calls == 3
    calls = 0
    with pytest.raises(TooManyRequests):  # not retried under the write policy
        await retry(lambda: always(TooManyRequests("PDB")), WRITES)
    assert calls == 1
    calls = 0
    with pytest.raises(BadRequest):
        await retry(lambda: always(BadRequest("no")), RetryPolicy("all", (ServerError,)))
    assert calls == 1
