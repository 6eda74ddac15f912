"""Fixtures shared by every test.

* ``cluster`` (session): the local control plane, started by ``scripts/cluster.sh up`` if it is not
  running (idempotent; seconds when warm), as a ``harness.cluster.Cluster``. Tests that use it are
  marked ``cluster`` automatically, so ``pytest -m "not cluster"`` leaves them out. When the control
  plane cannot start, the tests fail under CI (``CI=true``) and are skipped, with the reason, elsewhere.
  The cluster keeps running after the session (``make cluster-down`` stops it), except under CI,
  where a cluster the session started is stopped at its end.
* ``kube``: a ``teflon.common.kube.KubeClient`` for the cluster admin, closed after the test.
* ``namespace``: a fresh namespace for one test, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from teflon.common.kube import KubeClient
from tests.harness.cluster import ApiError, Cluster, ClusterError, ensure_up, is_running, stop


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    ci = os.environ.get("CI", "").lower() == "true"
    started_here = not is_running()
    try:
        running = ensure_up()
    except (ClusterError, OSError) as exc:
        if ci:
            pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
        pytest.skip(f"the local control plane did not start (CI would fail here): {exc}")
    yield running
    # A CI checkout is thrown away after the run; its cluster must not outlive it. Developers keep
    # theirs warm for the next run.
    if ci and started_here:
        stop()


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    client = cluster.kube()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{secrets.token_hex(3)}"
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    cluster.wait_until(
        lambda: cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout=30,
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    try:
        cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    except ApiError as exc:
        if exc.status != 404:
            raise
