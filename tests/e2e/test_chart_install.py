"""The chart as users install it: ``ct install`` of every ``ci/`` scenario, and ``helm upgrade`` from the
previous chart version, on the local control plane (kwok runs the pods, so ``--wait`` and ``helm test``
complete).

Installs here own the cluster-wide ``custom.metrics.k8s.io`` APIServices while they run, so they hold the
same machine-wide lock as every other test that registers them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import APISERVICE_LOCK
from tests.harness.cluster import ROOT, ApiError, Cluster, tool
from tests.harness.workloads import ensure_namespace

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "teflon"
#: cert-manager's own CRDs (from its Go module) so the certManager scenario installs as it would on a
#: cluster running cert-manager. Nothing issues the certificates: kwok pods mount no Secrets.
CERT_MANAGER = "github.com/cert-manager/cert-manager@v1.16.2"
CERT_MANAGER_CRDS = ("issuers", "clusterissuers", "certificates", "certificaterequests")
#: Namespaces the ci/ scenarios name besides the release's own (HPA targets, RBAC RoleBindings).
SCENARIO_NAMESPACES = ("shop", "payments")


def _install_cert_manager_crds(cluster: Cluster) -> None:
    proc = subprocess.run(
        ["go", "mod", "download", "-json", CERT_MANAGER],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or "Dir" not in info:
        raise AssertionError(f"go mod download {CERT_MANAGER} failed: {info.get('Error') or proc.stderr}")
    for name in CERT_MANAGER_CRDS:
        crd = yaml.safe_load((Path(info["Dir"]) / "deploy" / "crds" / f"crd-{name}.yaml").read_text())
        # The file is also a Helm template: its labels are template expressions (in quotes).
        crd["metadata"] = {"name": crd["metadata"]["name"]}
        cluster.apply(crd)

    def established() -> bool:
        for name in CERT_MANAGER_CRDS:
            crd = cluster.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}.cert-manager.io"
            )
            conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            if conds.get("Established") != "True":
                return False
        return True

    cluster.wait_until(established, 60, "cert-manager CRDs Established")


def _scenarios() -> list[str]:
    return sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def test_ct_install_installs_tests_and_uninstalls_every_ci_scenario(cluster: Cluster) -> None:
    scenarios = _scenarios()
    assert scenarios, "charts/teflon/ci has no *-values.yaml scenarios"
    _install_cert_manager_crds(cluster)
    with cluster.lock(APISERVICE_LOCK):
        # Inside the lock: `make demo-down` deletes `shop`, and a demo holds this lock while it runs.
        for ns in SCENARIO_NAMESPACES:
            ensure_namespace(cluster, ns)
        proc = cluster.run(
            [tool("ct"), "install", "--config", "ct.yaml", "--charts", "charts/teflon"],
            cwd=ROOT,
            timeout=1200,
            check=False,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for scenario in scenarios:
        assert f"ci/{scenario}" in output, f"ct did not install {scenario}:\n{output[-3000:]}"
    assert "All charts installed successfully" in output, output[-3000:]
    # ct uninstalled every release again: nothing of the chart is left behind.
    leftovers = [
        a["metadata"]["name"]
        for a in cluster.request("GET", "/apis/apiregistration.k8s.io/v1/apiservices")["items"]
        if a["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "teflon"
    ]
    assert leftovers == []


def _chart_version(chart_yaml: str) -> str:
    return str(yaml.safe_load(chart_yaml)["version"])


def _semver_key(version: str) -> tuple[int, int, int, int]:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(-.+)?$", version)
    if match is None:
        raise AssertionError(f"chart version {version!r} is not semver")
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), 0 if pre else 1


def previous_chart(workdir: Path) -> tuple[Path, str, str]:
    """The chart version before the current one: (chart directory, version, where it came from).

    It is the chart as committed at the newest git revision whose ``Chart.yaml`` has a lower version.
    While every revision carries the current version (no release yet), it is the current chart
    packaged with a lower pre-release version, so the upgrade path is still exercised.
    """
    current = _chart_version((CHART / "Chart.yaml").read_text())
    revisions = subprocess.run(
        ["git", "log", "--format=%H", "--", "charts/teflon/Chart.yaml"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    for rev in revisions:
        shown = subprocess.run(
            ["git", "show", f"{rev}:charts/teflon/Chart.yaml"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if shown.returncode != 0:
            continue
        version = _chart_version(shown.stdout)
        if _semver_key(version) < _semver_key(current):
            archive = subprocess.run(
                ["git", "archive", "--format=tar", rev, "charts/teflon"],
                capture_output=True,
                check=True,
                cwd=ROOT,
            )
            subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive.stdout, check=True)
            return workdir / "charts" / "teflon", version, f"git revision {rev[:12]}"
    chart = workdir / "teflon"
    shutil.copytree(CHART, chart)
    doc = (chart / "Chart.yaml").read_text()
    version = f"{current}-previous"
    (chart / "Chart.yaml").write_text(re.sub(r"(?m)^version:.*$", f"version: {version}", doc))
    return chart, version, "the current chart with a lower pre-release version (no earlier version committed)"


def _apiservice_ca(cluster: Cluster, version: str) -> bytes:
    obj = cluster.request(
        "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.custom.metrics.k8s.io"
    )
    return base64.b64decode(obj["spec"]["caBundle"])


def _retire_a_hand_written_falco_daemonset(cluster: Cluster, namespace: str) -> None:
    """The upgrade step the CHANGELOG (0.2.0) asks of users coming from 0.1: Falco moved to the official
    falco chart, whose DaemonSet has the same name but another selector, which Kubernetes never changes
    in place. Delete the old one before `helm upgrade`."""
    found = cluster.kubectl(
        "get", "daemonset", "teflon-falco", "-n", namespace, "-o", "json", "--ignore-not-found"
    )
    if not found.stdout.strip():
        return
    old = json.loads(found.stdout)
    if old["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") != "falco":
        return
    cluster.kubectl(
        "delete", "daemonset", "teflon-falco", "-n", namespace, "--cascade=foreground", "--timeout=120s"
    )


def _release(cluster: Cluster, namespace: str) -> dict[str, Any]:
    out = cluster.helm("list", "--namespace", namespace, "--output", "json").stdout
    (release,) = json.loads(out)
    return dict(release)


def test_helm_upgrade_from_the_previous_chart_version_keeps_the_certificates_and_the_release_healthy(
    cluster: Cluster, tmp_path: Path
) -> None:
    chart, version, origin = previous_chart(tmp_path)
    current = _chart_version((CHART / "Chart.yaml").read_text())
    assert _semver_key(version) < _semver_key(current), (version, current, origin)
    namespace = "e2e-upgrade"
    values = str(CHART / "ci" / "default-values.yaml")
    with cluster.lock(APISERVICE_LOCK):
        try:
            cluster.helm(
                "install",
                "teflon",
                str(chart),
                "--namespace",
                namespace,
                "--create-namespace",
                "--values",
                values,
                "--wait",
                "--timeout",
                "180s",
            )
            assert _release(cluster, namespace)["chart"] == f"teflon-{version}"
            secret = f"/api/v1/namespaces/{namespace}/secrets/teflon-metrics-tls"
            before = cluster.request("GET", secret)["data"]
            _retire_a_hand_written_falco_daemonset(cluster, namespace)
            cluster.helm(
                "upgrade",
                "teflon",
                str(CHART),
                "--namespace",
                namespace,
                "--values",
                values,
                "--wait",
                "--timeout",
                "180s",
            )
            release = _release(cluster, namespace)
            assert (release["chart"], release["status"], release["revision"]) == (
                f"teflon-{current}",
                "deployed",
                "2",
            )
            # The generated CA and serving certificate survive the upgrade, and the APIServices trust them.
            after = cluster.request("GET", secret)["data"]
            assert after == before
            for api_version in ("v1beta1", "v1beta2"):
                assert _apiservice_ca(cluster, api_version) == base64.b64decode(after["ca.crt"])
            for component in ("webhook", "metrics"):
                dep = cluster.request(
                    "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/teflon-{component}"
                )
                assert dep["status"].get("updatedReplicas") == dep["spec"]["replicas"], dep["status"]
                assert dep["status"].get("readyReplicas") == dep["spec"]["replicas"], dep["status"]
            falco = cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/teflon-falco")
            assert falco["spec"]["selector"]["matchLabels"] == {
                "app.kubernetes.io/name": "falco",
                "app.kubernetes.io/instance": "teflon",
            }
            assert falco["metadata"]["labels"]["helm.sh/chart"].startswith("falco-")
        finally:
            cluster.helm("uninstall", "teflon", "--namespace", namespace, "--ignore-not-found", "--wait")
            try:
                cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
