"""The policy format and the pure decisions made from it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from teflon.common.wire import Priority
from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.policy import (
    ActionType,
    LabelSelector,
    Mode,
    NamespaceFilter,
    Policy,
    PolicyError,
    PolicyStore,
    Rule,
    alert_matches,
    candidate_rules,
    effective_mode,
    is_protected_namespace,
    namespace_selected,
    parse_policy,
    select_rule,
    selector_matches,
)
from tests.harness.falco import alert_doc

from .conftest import FIXTURES

DESIGN_EXAMPLE = FIXTURES / "webhook" / "policy-design-example.yaml"


def alert(**overrides: Any) -> Alert:
    overrides.setdefault("priority", "Warning")
    overrides.setdefault("tags", ["container", "mitre_execution", "shell"])
    doc = alert_doc("shop", "web-1", **overrides)
    return parse_one(doc, received=datetime.now(UTC))


def rule(match: dict[str, Any] | None = None, **extra: Any) -> Rule:
    return Rule.model_validate({"name": "r", "match": match or {}, "actions": [{"type": "label"}], **extra})


def test_the_design_example_parses_with_every_field() -> None:
    policy = parse_policy(DESIGN_EXAMPLE.read_text())
    assert policy.mode is Mode.DRY_RUN
    assert policy.budgets.global_.per_minute == 10
    assert policy.budgets.per_namespace.burst == 10
    assert policy.circuit_breaker.cooldown_seconds == 600
    (only,) = policy.rules
    assert only.match.min_priority is Priority.WARNING
    assert [a.type for a in only.actions] == [
        ActionType.LABEL,
        ActionType.ISOLATE,
        ActionType.EVICT,
        ActionType.DELETE,
    ]
    assert only.actions[3].grace_period_seconds == 10  # type: ignore[union-attr]


def test_an_empty_policy_is_a_dry_run_with_the_default_protections() -> None:
    policy = parse_policy("")
    assert policy.mode is Mode.DRY_RUN
    assert policy.rules == []
    assert "kube-system" in policy.protected_namespaces
    assert policy.opt_out_label == "teflon.io/ignore"
    assert policy.allow_bare_pods is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mode: yolo", "mode"),
        ("- a list", "must be a YAML mapping"),
        ("mode: [", "not valid YAML"),
        ("rules: [{name: a, actions: [{type: explode}]}]", "explode"),
        ("rules: [{name: a, actions: []}]", "actions"),
        ("rules: [{name: a, actions: [{type: label}]}, {name: a, actions: [{type: label}]}]", "used twice"),
        ("unknownKey: 1", "unknownKey"),
        (
            "rules: [{name: a, match: {minPriority: Loud}, actions: [{type: label}]}]",
            "unknown Falco priority",
        ),
        ("rules: [{name: a, actions: [{type: delete, gracePeriodSeconds: -1}]}]", "gracePeriodSeconds"),
    ],
)
def test_invalid_policies_are_refused_with_a_message_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=None) as caught:
        parse_policy(text)
    assert fragment in str(caught.value)


MATCHES = [
    # (description, match, alert overrides, expected)
    ("empty match takes any alert", {}, {}, True),
    ("exact rule name", {"rules": ["Terminal shell in container"]}, {}, True),
    ("glob rule name", {"rules": ["Terminal *"]}, {}, True),
    ("other rule name", {"rules": ["Write below etc"]}, {}, False),
    ("rule names are case sensitive", {"rules": ["terminal shell in container"]}, {}, False),
    ("any of the tags", {"tags": ["network", "shell"]}, {}, True),
    ("none of the tags", {"tags": ["network"]}, {}, False),
    ("priority at the minimum", {"minPriority": "Warning"}, {}, True),
    ("priority above the minimum", {"minPriority": "Notice"}, {}, True),
    ("priority below the minimum", {"minPriority": "Critical"}, {}, False),
    ("source listed", {"sources": ["syscall"]}, {}, True),
    ("source not listed", {"sources": ["k8s_audit"]}, {}, False),
    ("namespace included by glob", {"namespaces": {"include": ["sh*"]}}, {}, True),
    ("namespace excluded", {"namespaces": {"include": ["*"], "exclude": ["shop"]}}, {}, False),
    ("namespace not included", {"namespaces": {"include": ["prod-*"]}}, {}, False),
    ("internal alerts never match", {}, {"source": "internal"}, False),
    ("internal never matches even when listed", {"sources": ["internal"]}, {"source": "internal"}, False),
    (
        "all conditions together",
        {"rules": ["Terminal*"], "tags": ["shell"], "minPriority": "Notice", "sources": ["syscall"]},
        {},
        True,
    ),
]


@pytest.mark.parametrize(("desc", "match", "overrides", "expected"), MATCHES, ids=[m[0] for m in MATCHES])
def test_alert_level_matching(
    desc: str, match: dict[str, Any], overrides: dict[str, Any], expected: bool
) -> None:
    assert alert_matches(rule(match).match, alert(**overrides)) is expected


@pytest.mark.parametrize(
    ("flt", "namespace", "expected"),
    [
        ({"include": ["*"]}, None, True),
        ({"include": ["prod-*"]}, None, False),
        ({"include": ["*"], "exclude": ["dev-*"]}, "dev-1", False),
        ({"include": ["a", "b"]}, "b", True),
    ],
)
def test_namespace_filters_use_include_and_exclude_globs(
    flt: dict[str, Any], namespace: str | None, expected: bool
) -> None:
    assert namespace_selected(NamespaceFilter.model_validate(flt), namespace) is expected


SELECTORS = [
    ({}, {}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    (
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]},
        {"tier": "edge"},
        True,
    ),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, {"tier": "db"}, False),
    ({"matchExpressions": [{"key": "pci", "operator": "Exists"}]}, {"pci": ""}, True),
    ({"matchExpressions": [{"key": "pci", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "pci", "operator": "DoesNotExist"}]}, {"pci": "yes"}, False),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTORS)
def test_pod_selectors_follow_kubernetes_label_selector_semantics(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert selector_matches(LabelSelector.model_validate(selector), labels) is expected


def test_the_first_rule_whose_pod_selector_fits_decides() -> None:
    policy = Policy.model_validate(
        {
            "rules": [
                {
                    "name": "pci",
                    "match": {"podSelector": {"matchLabels": {"pci": "true"}}},
                    "actions": [{"type": "delete"}],
                },
                {"name": "shells", "match": {"tags": ["shell"]}, "actions": [{"type": "label"}]},
                {"name": "never", "match": {"tags": ["network"]}, "actions": [{"type": "label"}]},
            ]
        }
    )
    candidates = candidate_rules(policy, alert())
    assert [r.name for r in candidates] == ["pci", "shells"]
    assert select_rule(candidates, {"pci": "true"}).name == "pci"  # type: ignore[union-attr]
    assert select_rule(candidates, {"pci": "false"}).name == "shells"  # type: ignore[union-attr]
    # The pod could not be read: a selector that cannot be checked never matches.
    assert select_rule(candidates, None).name == "shells"  # type: ignore[union-attr]
    assert select_rule(candidates[:1], None) is None


@pytest.mark.parametrize(
    ("global_mode", "rule_mode", "expected"),
    [
        ("dryRun", None, Mode.DRY_RUN),
        ("dryRun", "enforce", Mode.DRY_RUN),  # a rule can never turn enforcement on by itself
        ("enforce", None, Mode.ENFORCE),
        ("enforce", "dryRun", Mode.DRY_RUN),
        ("enforce", "enforce", Mode.ENFORCE),
    ],
)
def test_the_global_mode_is_the_master_switch(
    global_mode: str, rule_mode: str | None, expected: Mode
) -> None:
    r = rule(mode=rule_mode) if rule_mode else rule()
    policy = Policy.model_validate(
        {"mode": global_mode, "rules": [r.model_dump(by_alias=True, exclude_none=True)]}
    )
    assert effective_mode(policy, policy.rules[0]) is expected


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("kube-system", True),
        ("kube-node-lease", True),
        ("teflon", True),
        ("shop", False),
        ("tenant-secure", True),
    ],
)
def test_protected_namespaces_always_include_the_webhooks_own(namespace: str, expected: bool) -> None:
    policy = Policy.model_validate({"protectedNamespaces": ["kube-system", "kube-node-lease", "*-secure"]})
    assert is_protected_namespace(policy, "teflon", namespace) is expected


def _store(path: Path) -> tuple[PolicyStore, list[str], list[Policy]]:
    errors: list[str] = []
    loads: list[Policy] = []
    return PolicyStore(path, on_error=errors.append, on_load=loads.append), errors, loads


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, (stamp, stamp))


def test_a_changed_policy_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, "mode: dryRun", 1_000)
    store, errors, loads = _store(path)
    assert store.load() is True
    assert store.load() is False  # unchanged
    _write(path, "mode: enforce", 2_000)
    assert store.load() is True
    assert store.policy is not None
    assert store.policy.mode is Mode.ENFORCE
    assert len(loads) == 2
    assert errors == []


def test_an_invalid_new_policy_keeps_the_old_one_and_reports_one_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, "mode: enforce", 1_000)
    store, errors, _ = _store(path)
    store.load()
    _write(path, "mode: [broken", 2_000)
    assert store.load() is False
    assert store.load() is False  # the same bad file is reported once
    assert store.policy is not None
    assert store.policy.mode is Mode.ENFORCE
    assert errors == ["PolicyError"]
    _write(path, "mode: dryRun", 3_000)
    assert store.load() is True
    reloaded = store.policy  # a new read: the load above replaced it
    assert reloaded is not None
    assert reloaded.mode is Mode.DRY_RUN


def test_a_missing_policy_file_at_startup_leaves_no_policy_and_an_error(tmp_path: Path) -> None:
    store, errors, _ = _store(tmp_path / "absent.yaml")
    assert store.load() is False
    assert store.policy is None
    assert errors == ["FileNotFoundError"]


def test_no_policy_file_means_the_default_dry_run_policy() -> None:
    store = PolicyStore(None, on_error=lambda _e: None, on_load=lambda _p: None)
    assert store.load() is True
    assert store.policy == Policy()
