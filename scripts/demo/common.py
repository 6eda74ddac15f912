"""The demo's settings and the few helpers every part of it uses."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness.cluster import Cluster
from tests.harness.stack import PROCESS_VALUES

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "teflon-demo"
RELEASE = "teflon"
SHOP = "shop"
APP = "storefront"
HANDLER = "analyzer"  # scales on the namespace's alert rate: the workload that handles alerts
HERE = Path(__file__).resolve().parent
VALUES = [PROCESS_VALUES, HERE / "values.yaml"]
ENFORCE = [*VALUES, HERE / "enforce.yaml"]
LOCK = "apiservice-custom.metrics.k8s.io"
#: The local control plane's state, as for scripts/cluster.sh (TEFLON_CLUSTER_STATE moves it).
CLUSTER_STATE = Path(os.environ.get("TEFLON_CLUSTER_STATE") or ROOT / ".cluster")
STATE = CLUSTER_STATE / "demo"
STATUS = STATE / "status.json"
PIDFILE = STATE / "supervisor.pid"


def say(text: str = "") -> None:
    print(text, flush=True)


def cluster() -> Cluster:
    return Cluster.from_state(CLUSTER_STATE)
