"""RBAC never grants more than the enabled actions need, and always what they need.

The expectation is computed from the policy the webhook will load (its own parser and its own
``effective_mode``), not from the chart's templates, so the two are checked against each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from teflon.metrics.config import parse_config
from teflon.metrics.resources import RESOURCE_TYPES
from teflon.webhook.policy import ActionType, Mode, Policy, effective_mode, parse_policy

from .rendering import NAMESPACE, SCENARIOS, Manifest, Rendered, env_of, mounted_path, render

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

ALWAYS: set[Grant] = {
    ("", "pods", "get"),
    *{("apps", r, "get") for r in ("replicasets", "deployments", "statefulsets", "daemonsets")},
    ("batch", "jobs", "get"),
    ("batch", "cronjobs", "get"),
    ("events.k8s.io", "events", "create"),
}
PER_ACTION: dict[ActionType, set[Grant]] = {
    ActionType.DELETE: {("", "pods", "delete")},
    ActionType.EVICT: {("", "pods/eviction", "create")},
    ActionType.LABEL: {("", "pods", "patch")},
    ActionType.ISOLATE: {
        ("", "pods", "patch"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "networkpolicies", "get"),
        ("networking.k8s.io", "networkpolicies", "update"),
    },
}
# Claims (one Lease per pod UID and action, so replicas never act twice) live in the release namespace.
CLAIMS: set[Grant] = {
    ("coordination.k8s.io", "leases", verb) for verb in ("get", "list", "create", "update", "delete")
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def loaded_policy(rendered: Rendered) -> Policy:
    webhook = rendered.workload("webhook")
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    volume, key = mounted_path(webhook, container, env_of(container)["TEFLON_WEBHOOK_POLICY_FILE"]["value"])
    return parse_policy(rendered.get("ConfigMap", volume["configMap"]["name"], NAMESPACE)["data"][key])


def needed(policy: Policy) -> set[Grant]:
    out = set(ALWAYS)
    for rule in policy.rules:
        if effective_mode(policy, rule) is Mode.ENFORCE:
            for action in rule.actions:
                out |= PER_ACTION[ActionType(action.type)]
    return out


def needed_claims(policy: Policy) -> set[Grant]:
    enforced = any(effective_mode(policy, rule) is Mode.ENFORCE and rule.actions for rule in policy.rules)
    return set(CLAIMS) if enforced else set()


def webhook_role(rendered: Rendered) -> Manifest:
    (role,) = rendered.component("ClusterRole", "webhook")
    return role


def claim_grants(rendered: Rendered) -> set[Grant]:
    """What the webhook's ServiceAccount gets from namespaced Roles, which must all be in NAMESPACE."""
    account = rendered.workload("webhook")["spec"]["template"]["spec"]["serviceAccountName"]
    out: set[Grant] = set()
    for binding in rendered.of_kind("RoleBinding"):
        if binding["roleRef"]["kind"] != "Role":
            continue
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        if ("ServiceAccount", account, NAMESPACE) not in subjects:
            continue
        assert binding["metadata"]["namespace"] == NAMESPACE
        role = rendered.get("Role", binding["roleRef"]["name"], NAMESPACE)
        out |= grants(role["rules"])
    return out


POLICIES: dict[str, dict[str, Any]] = {
    "dry run with every action": {
        "mode": "dryRun",
        "rules": [{"name": "all", "actions": [{"type": t} for t in ("label", "isolate", "evict", "delete")]}],
    },
    "enforce, delete only": {"mode": "enforce", "rules": [{"name": "d", "actions": [{"type": "delete"}]}]},
    "enforce, evict only": {"mode": "enforce", "rules": [{"name": "e", "actions": [{"type": "evict"}]}]},
    "enforce, label only": {"mode": "enforce", "rules": [{"name": "l", "actions": [{"type": "label"}]}]},
    "enforce, isolate only": {"mode": "enforce", "rules": [{"name": "i", "actions": [{"type": "isolate"}]}]},
    "enforce, a rule downgraded": {
        "mode": "enforce",
        "rules": [
            {"name": "watch", "mode": "dryRun", "actions": [{"type": "delete"}]},
            {"name": "act", "mode": "enforce", "actions": [{"type": "label"}]},
        ],
    },
    "enforce, no rules": {"mode": "enforce", "rules": []},
}


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_the_webhook_role_grants_exactly_what_the_scenario_policy_needs(scenario: str | None) -> None:
    rendered = render(scenario)
    assert grants(webhook_role(rendered)["rules"]) == needed(loaded_policy(rendered))
    assert claim_grants(rendered) == needed_claims(loaded_policy(rendered))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_the_webhook_role_grants_exactly_what_each_policy_needs(name: str) -> None:
    rendered = render(webhook={"policy": POLICIES[name]})
    assert grants(webhook_role(rendered)["rules"]) == needed(loaded_policy(rendered))
    assert claim_grants(rendered) == needed_claims(loaded_policy(rendered))


def test_claims_are_granted_only_in_the_release_namespace_and_only_when_enforcing() -> None:
    assert claim_grants(render()) == set()
    enforcing = render(webhook={"policy": {"mode": "enforce"}, "rbac": {"namespaces": ["shop"]}})
    assert claim_grants(enforcing) == CLAIMS
    roles = enforcing.of_kind("Role")
    assert {r["metadata"]["namespace"] for r in roles if grants(r["rules"]) & CLAIMS} == {NAMESPACE}
    assert not [r for r in enforcing.of_kind("ClusterRole") if grants(r["rules"]) & CLAIMS]


def test_enforce_with_a_delete_action_adds_exactly_pods_delete() -> None:
    dry = grants(webhook_role(render())["rules"])
    enforce = grants(webhook_role(render(webhook={"policy": {"mode": "enforce"}}))["rules"])
    assert enforce - dry == {("", "pods", "delete")}
    assert dry - enforce == set()


def test_a_dry_run_install_grants_no_write_verb_except_recording_events() -> None:
    writes = {g for g in grants(webhook_role(render())["rules"]) if g[2] in WRITE_VERBS}
    assert writes == {("events.k8s.io", "events", "create")}


def test_listed_namespaces_bind_the_webhook_role_only_there() -> None:
    rendered = render("enforce-values.yaml")
    role = webhook_role(rendered)["metadata"]["name"]
    assert not [b for b in rendered.of_kind("ClusterRoleBinding") if b["roleRef"]["name"] == role]
    bound = {
        b["metadata"]["namespace"] for b in rendered.of_kind("RoleBinding") if b["roleRef"]["name"] == role
    }
    assert bound == {"default"}


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_the_metrics_server_reads_only_the_resources_its_metrics_describe(scenario: str | None) -> None:
    rendered = render(scenario)
    metrics = rendered.workload("metrics")
    (container,) = metrics["spec"]["template"]["spec"]["containers"]
    volume, key = mounted_path(metrics, container, env_of(container)["TEFLON_METRICS_CONFIG_FILE"]["value"])
    config = parse_config(rendered.get("ConfigMap", volume["configMap"]["name"], NAMESPACE)["data"][key])
    wanted: set[Grant] = set()
    for metric in config.all_metrics():
        for resource in metric.resources:
            rtype = RESOURCE_TYPES[resource]
            group = rtype.api_version.rpartition("/")[0]
            wanted |= {(group, rtype.plural, "get"), (group, rtype.plural, "list")}
    (role,) = [
        r for r in rendered.component("ClusterRole", "metrics") if r["metadata"]["name"] == "teflon-metrics"
    ]
    assert grants(role["rules"]) == wanted


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_no_chart_role_grants_wildcard_verbs_or_secrets(scenario: str | None) -> None:
    rendered = render(scenario)
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        for group, resource, verb in grants(role["rules"]):
            assert verb != "*", f"{role['metadata']['name']} grants every verb on {group}/{resource}"
            assert resource != "secrets", f"{role['metadata']['name']} grants {verb} on Secrets"
            if resource == "*":
                assert group in {"custom.metrics.k8s.io", "external.metrics.k8s.io"}
                assert verb in {"get", "list", "watch"}
