"""scripts/validate_manifests.py: the schema gate `make test` puts every rendered chart scenario through.

kubernetes-validate alone passes a manifest whose kind it has no schema for, so these tests pin the
wrapper's stricter rules: a missing schema in a built-in group fails, a custom resource fails unless
listed, and only listed custom resources are skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: info}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"""

SERVICE_MONITOR = """
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: web}
spec: {endpoints: [{port: http}]}
"""

# Served until Kubernetes 1.24, gone since 1.25.
OLD_PDB = """
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: old}
spec: {minAvailable: 1}
"""


def validate(manifests: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.validate_manifests", *args, "-"],
        cwd=ROOT,
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("version", ["1.30", "1.37.1", "v1.33"])
def test_valid_built_in_objects_pass_on_each_supported_version(version: str) -> None:
    result = validate(f"{CONFIGMAP}---{DEPLOYMENT}", "--kubernetes-version", version)
    assert result.returncode == 0, result.stderr
    assert "2 valid, 0 skipped custom resources, 0 invalid" in result.stdout


def test_an_api_removed_from_kubernetes_fails_instead_of_being_skipped() -> None:
    result = validate(OLD_PDB, "--kubernetes-version", "1.30")
    assert result.returncode == 1
    assert "policy/v1beta1 PodDisruptionBudget does not exist in Kubernetes 1.30" in result.stderr


def test_a_misspelt_built_in_kind_fails() -> None:
    result = validate(
        "apiVersion: v1\nkind: ConfigMapp\nmetadata: {name: typo}\n", "--kubernetes-version", "1.37"
    )
    assert result.returncode == 1
    assert "ConfigMapp does not exist" in result.stderr


def test_an_unknown_field_fails_strict_validation() -> None:
    bad = DEPLOYMENT.replace("image:", "imagePullPolice: Always, image:")
    result = validate(bad, "--kubernetes-version", "1.37")
    assert result.returncode == 1
    assert "imagePullPolice" in result.stderr


def test_a_custom_resource_fails_unless_it_is_listed_with_skip() -> None:
    unlisted = validate(SERVICE_MONITOR, "--kubernetes-version", "1.37")
    assert unlisted.returncode == 1
    assert "list it with --skip" in unlisted.stderr

    listed = validate(
        SERVICE_MONITOR, "--kubernetes-version", "1.37", "--skip", "monitoring.coreos.com/v1/ServiceMonitor"
    )
    assert listed.returncode == 0, listed.stderr
    assert "0 valid, 1 skipped custom resources, 0 invalid" in listed.stdout


def test_a_skip_entry_for_another_version_of_the_resource_does_not_cover_it() -> None:
    result = validate(
        SERVICE_MONITOR,
        "--kubernetes-version",
        "1.37",
        "--skip",
        "monitoring.coreos.com/v1alpha1/ServiceMonitor",
    )
    assert result.returncode == 1


def test_a_kubernetes_version_without_bundled_schemas_is_refused() -> None:
    result = validate(CONFIGMAP, "--kubernetes-version", "1.24")
    assert result.returncode == 2
    assert "ships no schemas for Kubernetes 1.24" in result.stderr


def test_empty_input_is_a_failure_not_a_pass() -> None:
    result = validate("---\n", "--kubernetes-version", "1.37")
    assert result.returncode == 1
    assert "no Kubernetes objects" in result.stderr


def test_unparseable_yaml_is_reported_as_an_error() -> None:
    result = validate("kind: [unclosed\n", "--kubernetes-version", "1.37")
    assert result.returncode == 2
    assert "cannot read manifests" in result.stderr


def test_a_document_without_kind_fails() -> None:
    result = validate("apiVersion: v1\nmetadata: {name: x}\n", "--kubernetes-version", "1.37")
    assert result.returncode == 1
    assert "apiVersion and kind must both be set" in result.stderr
