"""Render the teflon chart with the real `helm template` and index the objects it produces.

The contract tests in this package look at the manifests as a cluster would receive them, so they
run the same helm binary `make tools` installs (``.tools/bin`` is first on PATH under `make`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "teflon"
RELEASE = "teflon"
NAMESPACE = "teflon"
#: Values scenarios: `ct`'s install scenarios (ci/) and render-only ones that need CRDs or Secrets a
#: bare cluster lacks (tests/values/), by file name.
SCENARIO_PATHS = {
    p.name: p for d in (CHART / "ci", CHART / "tests" / "values") for p in sorted(d.glob("*.yaml"))
}
SCENARIOS = sorted(SCENARIO_PATHS)

Manifest = dict[str, Any]


def helm_binary() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        raise RuntimeError("helm is not installed: run `make tools`")
    return found


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template` run."""

    objects: tuple[Manifest, ...]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest:
        matches = [
            o
            for o in self.of_kind(kind)
            if o["metadata"]["name"] == name
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]
        assert len(matches) == 1, f"expected one {kind} {namespace}/{name}, found {len(matches)}"
        return matches[0]

    def component(self, kind: str, component: str) -> list[Manifest]:
        return [
            o
            for o in self.of_kind(kind)
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]

    def workload(self, component: str) -> Manifest:
        found = self.component("Deployment", component) + self.component("DaemonSet", component)
        assert len(found) == 1, f"expected one workload for {component}, found {len(found)}"
        return found[0]


@cache
def _render(values_file: str | None, overrides_json: str) -> Rendered:
    cmd = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values_file:
        cmd += ["--values", str(SCENARIO_PATHS[values_file])]
    overrides = json.loads(overrides_json)
    if overrides:
        # A values file (not --set) keeps types and nested lists exactly as written.
        cmd += ["--values", "-"]
    result = subprocess.run(
        cmd, input=yaml.safe_dump(overrides), capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return Rendered(tuple(d for d in yaml.safe_load_all(result.stdout) if d))


class RenderError(Exception):
    """`helm template` refused the values; the message is helm's."""


def render(values_file: str | None = None, **overrides: Any) -> Rendered:
    """Render with an optional scenario (a SCENARIOS name) and nested overrides (``webhook={...}``)."""
    return _render(values_file, json.dumps(overrides, sort_keys=True))


def containers(workload: Manifest) -> Iterator[Manifest]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Mapping[str, Any]) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def mounted_path(workload: Manifest, container: Mapping[str, Any], path: str) -> tuple[Manifest, str]:
    """The pod volume that provides file ``path`` in ``container``, and the file's key in it."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    # The deepest mount wins, as in the container (/etc/falco/certs/client over /etc/falco).
    for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return volumes[mount["name"]], path[len(prefix) :]
    raise AssertionError(f"{path} is not under any volume mount of container {container['name']}")
