"""Validate rendered Kubernetes manifests against the API schemas of one Kubernetes version.

kubernetes-validate only warns and exits 0 when it has no schema for a kind, so a template that
uses a removed API (policy/v1beta1 PodDisruptionBudget on 1.25+) or misspells a built-in kind
would pass unnoticed. This wrapper fails on every object of a built-in API group that has no
schema, and on every custom resource that is not listed with --skip, so skipping is a decision
written down in the caller, never a silent default.

Usage:
  helm template ... | python -m scripts.validate_manifests --kubernetes-version 1.30 \\
      --skip monitoring.coreos.com/v1/ServiceMonitor -
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type hints
import yaml

# Groups served by kube-apiserver itself: the core group ("") and every group without a dot or
# under k8s.io. Their schemas ship with kubernetes-validate, so a missing schema means the API
# does not exist in that Kubernetes version.
BUILT_IN_SUFFIX = ".k8s.io"


@dataclass(frozen=True)
class Finding:
    """One object's result: ok, skipped (a listed custom resource), or an error message."""

    source: str
    name: str
    status: str
    detail: str = ""


def api_group(api_version: str) -> str:
    """Return the group of an apiVersion: "" for "v1", "apps" for "apps/v1"."""
    return api_version.rpartition("/")[0]


def is_built_in(group: str) -> bool:
    """Tell whether kube-apiserver serves this group itself (so a schema must exist)."""
    return group == "" or "." not in group or group.endswith(BUILT_IN_SUFFIX)


def describe(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "<unnamed>") if isinstance(metadata, dict) else "<unnamed>"
    return f"{obj.get('apiVersion', '?')}/{obj.get('kind', '?')} {name}"


def check_object(obj: Any, source: str, version: str, skip: frozenset[str]) -> Finding:
    """Validate one decoded YAML document; every outcome is a Finding, none is swallowed."""
    if not isinstance(obj, dict):
        return Finding(source, repr(obj)[:60], "error", "document is not a mapping")
    name = describe(obj)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return Finding(source, name, "error", "apiVersion and kind must both be set")
    group = api_group(api_version)
    if not is_built_in(group):
        if f"{api_version}/{kind}" in skip:
            return Finding(source, name, "skipped", "custom resource listed with --skip")
        return Finding(
            source,
            name,
            "error",
            f"custom resource {api_version}/{kind} has no schema here; list it with --skip to accept it",
        )
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return Finding(source, name, "error", f"{api_version} {kind} does not exist in Kubernetes {version}")
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path) or "<root>"
        return Finding(source, name, "error", f"{path}: {exc.message}")
    return Finding(source, name, "ok")


def documents(paths: Iterable[str]) -> Iterator[tuple[str, Any]]:
    for path in paths:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        source = "<stdin>" if path == "-" else path
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                yield source, doc


def supported(version: str) -> bool:
    wanted = tuple(int(part) for part in version.split(".")[:2])
    return any(
        tuple(int(part) for part in known.split(".")[:2]) == wanted
        for known in kubernetes_validate.utils.all_versions()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--kubernetes-version", required=True, help="e.g. 1.30 or 1.37.1")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="APIVERSION/KIND",
        help="a custom resource to accept without a schema, e.g. cert-manager.io/v1/Certificate",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    parser.add_argument("files", nargs="+", help="manifest files, or - for standard input")
    args = parser.parse_args(argv)

    version: str = args.kubernetes_version.removeprefix("v")
    if not supported(version):
        print(
            f"ERROR kubernetes-validate {kubernetes_validate.__version__} ships no schemas for "
            f"Kubernetes {version}",
            file=sys.stderr,
        )
        return 2
    skip = frozenset(args.skip)
    try:
        findings = [check_object(doc, src, version, skip) for src, doc in documents(args.files)]
    except (OSError, yaml.YAMLError) as exc:
        print(f"ERROR cannot read manifests: {exc}", file=sys.stderr)
        return 2
    if not findings:
        print("ERROR no Kubernetes objects to validate", file=sys.stderr)
        return 1
    for finding in findings:
        if finding.status == "error":
            print(f"ERROR {finding.source}: {finding.name}: {finding.detail}", file=sys.stderr)
        elif not args.quiet:
            print(f"{finding.status.upper():7} {finding.name}")
    errors = sum(f.status == "error" for f in findings)
    skipped = sum(f.status == "skipped" for f in findings)
    print(
        f"kubernetes {version}: {len(findings) - errors - skipped} valid, "
        f"{skipped} skipped custom resources, {errors} invalid"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
