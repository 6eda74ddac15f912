"""Fixtures of the end-to-end suite: one installed release whose services run as real processes.

``stack`` (module) installs ``charts/teflon`` as release ``teflon`` in namespace ``teflon-e2e`` with
``tests/harness/values/processes.yaml`` + ``values/e2e.yaml`` and runs its webhook and metrics server
(``tests.harness.stack.ChartStack``). It holds the machine-wide lock on ``custom.metrics.k8s.io``
for its whole life, since only one server may own those APIServices. ``policy_mode("enforce")``
switches the policy with a ``helm upgrade`` (the webhook processes roll like pods do) and is a no-op
when already there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster
from tests.harness.stack import PROCESS_VALUES, ChartStack
from tests.harness.workloads import ensure_namespace

NAMESPACE = "teflon-e2e"
RELEASE = "teflon"
#: The namespace of the HPA target named in values/e2e.yaml (autoscaling.targets).
SHOP = "e2e-shop"
VALUES = Path(__file__).parent / "values"
BASE_VALUES = [PROCESS_VALUES, VALUES / "e2e.yaml"]
MODES = {"dryRun": BASE_VALUES, "enforce": [*BASE_VALUES, VALUES / "enforce.yaml"]}
APISERVICE_LOCK = "apiservice-custom.metrics.k8s.io"


@pytest.fixture(scope="module")
def stack(cluster: Cluster) -> Iterator[ChartStack]:
    # Not pytest's tmp_path: the processes run as the image's user, who must be able to traverse it.
    workdir = Path(tempfile.mkdtemp(prefix="teflon-e2e-"))
    workdir.chmod(0o755)
    with cluster.lock(APISERVICE_LOCK):
        ensure_namespace(cluster, SHOP)
        s = ChartStack(cluster, RELEASE, NAMESPACE, workdir)
        s.uninstall()  # what an interrupted run may have left
        s.helm_install(BASE_VALUES)
        s.mode = "dryRun"
        try:
            with s.running("webhook", "metrics"):
                yield s
        finally:
            s.uninstall()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def policy_mode(stack: ChartStack) -> Callable[[str], None]:
    def switch(mode: str) -> None:
        if stack.mode != mode:
            stack.upgrade(MODES[mode])
            stack.mode = mode

    return switch
