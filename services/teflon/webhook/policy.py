"""The response policy: its YAML model and the pure functions that decide which rule an alert falls under.

The file format is fixed in docs/design.md. Everything here is side-effect free; loading from disk and
reloading on change live in ``PolicyStore`` so that a broken new file never replaces a working policy.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from teflon.common.wire import Priority
from teflon.webhook.alert import Alert

log = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Mode(StrEnum):
    DRY_RUN = "dryRun"
    ENFORCE = "enforce"


MAX_QUARANTINE_SECONDS = 30 * 86_400


class Bucket(_Model):
    per_minute: float = Field(gt=0)
    burst: int = Field(ge=1)


class Budgets(_Model):
    global_: Bucket = Field(default=Bucket(per_minute=10, burst=20), alias="global")
    per_namespace: Bucket = Bucket(per_minute=5, burst=10)


class CircuitBreakerConfig(_Model):
    max_actions: int = Field(default=50, ge=1)
    window_seconds: float = Field(default=300, gt=0)
    cooldown_seconds: float = Field(default=600, gt=0)


class NamespaceFilter(_Model):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class SelectorRequirement(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(_Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[SelectorRequirement] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


class Match(_Model):
    rules: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    min_priority: Priority = Priority.DEBUG
    sources: list[str] = Field(default_factory=list)
    namespaces: NamespaceFilter = NamespaceFilter()
    pod_selector: LabelSelector = LabelSelector()

    @field_validator("min_priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        return Priority.parse(value) if isinstance(value, str) else value


class ActionType(StrEnum):
    LABEL = "label"
    ISOLATE = "isolate"
    EVICT = "evict"
    DELETE = "delete"
    QUARANTINE = "quarantine"


class LabelAction(_Model):
    type: Literal[ActionType.LABEL]
    labels: dict[str, str] = Field(default_factory=lambda: {"teflon.io/quarantined": "true"}, min_length=1)


class IsolateAction(_Model):
    type: Literal[ActionType.ISOLATE]


class EvictAction(_Model):
    type: Literal[ActionType.EVICT]
    grace_period_seconds: int | None = Field(default=None, ge=0)


class DeleteAction(_Model):
    type: Literal[ActionType.DELETE]
    grace_period_seconds: int | None = Field(default=None, ge=0)


class QuarantineAction(_Model):
    """Detach the pod from its ReplicaSet and Services, isolate it, keep it ``ttl_seconds``, delete it.

    A StatefulSet's pod cannot be replaced under its own name while it is kept: there the action
    falls back to ``stateful_set_fallback``; pods of other controllers (Jobs, custom ones) to isolate.
    """

    type: Literal[ActionType.QUARANTINE]
    ttl_seconds: int = Field(default=86_400, ge=60, le=MAX_QUARANTINE_SECONDS)
    stateful_set_fallback: Literal["isolate", "delete"] = "isolate"


Action = Annotated[
    LabelAction | IsolateAction | EvictAction | DeleteAction | QuarantineAction,
    Field(discriminator="type"),
]


class HoldMode(StrEnum):
    ERROR = "error"
    CAP = "cap"


class Guardrail(_Model):
    """Keeps a compromised workload from being scaled out by its own alerts.

    Alerts about a pod teflon acted on are not counted in the rates; a workload (and the pod) with an
    enforced response in the last ``hold_minutes`` has its rates held: ``error`` makes the metrics API
    answer an error for it (its HPA holds), ``cap`` caps the value at the rate before the response.
    """

    enabled: bool = True
    hold_minutes: float = Field(default=15, gt=0, le=24 * 60)
    hold: HoldMode = HoldMode.ERROR


class Rule(_Model):
    name: str = Field(min_length=1, max_length=100)
    mode: Mode | None = None
    match: Match = Match()
    actions: list[Action] = Field(min_length=1)


class Policy(_Model):
    mode: Mode = Mode.DRY_RUN
    protected_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease"]
    )
    opt_out_label: str = "teflon.io/ignore"
    allow_bare_pods: bool = False
    min_healthy_replicas: int = Field(default=1, ge=0)
    node_check: bool = True
    dedupe_seconds: float = Field(default=300, ge=0)
    budgets: Budgets = Budgets()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    guardrail: Guardrail = Guardrail()
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice; names label metrics and Events")
            seen.add(rule.name)
        return rules


class PolicyError(Exception):
    """A policy file could not be read or is invalid."""


def parse_policy(text: str) -> Policy:
    """Parse policy YAML; raises ``PolicyError`` with a readable message."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy is not valid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PolicyError("policy must be a YAML mapping")
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy: {exc}") from exc


# --- decisions (pure) ---


def _glob_any(patterns: Sequence[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def namespace_selected(flt: NamespaceFilter, namespace: str | None) -> bool:
    """Include/exclude globs; an alert without a namespace is selected only by an include of ``*``."""
    if namespace is None:
        return "*" in flt.include
    return _glob_any(flt.include, namespace) and not _glob_any(flt.exclude, namespace)


def alert_matches(match: Match, alert: Alert) -> bool:
    """Whether the alert-level part of a rule's match fits (everything but the pod selector)."""
    if alert.internal or alert.priority < match.min_priority:
        return False
    if match.rules and not _glob_any(match.rules, alert.rule):
        return False
    if match.tags and not set(match.tags).intersection(alert.tags):
        return False
    if match.sources and alert.source not in match.sources:
        return False
    return namespace_selected(match.namespaces, alert.namespace)


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""
    for key, wanted in selector.match_labels.items():
        if labels.get(key) != wanted:
            return False
    for req in selector.match_expressions:
        value = labels.get(req.key)
        if req.operator == "In" and value not in req.values:
            return False
        if req.operator == "NotIn" and value is not None and value in req.values:
            return False
        if req.operator == "Exists" and value is None:
            return False
        if req.operator == "DoesNotExist" and value is not None:
            return False
    return True


def candidate_rules(policy: Policy, alert: Alert) -> list[Rule]:
    """Rules whose alert-level match fits, in policy order; the pod selector decides among them."""
    return [rule for rule in policy.rules if alert_matches(rule.match, alert)]


def select_rule(candidates: Sequence[Rule], labels: Mapping[str, str] | None) -> Rule | None:
    """The first candidate whose pod selector fits the pod's labels.

    With the pod unknown (``labels is None``, no cluster to ask) only rules without a selector qualify:
    a selector that cannot be checked never matches.
    """
    for rule in candidates:
        if rule.match.pod_selector.empty or (
            labels is not None and selector_matches(rule.match.pod_selector, labels)
        ):
            return rule
    return None


def effective_mode(policy: Policy, rule: Rule) -> Mode:
    """The global mode is the master switch: a rule may downgrade to dry run, never upgrade to enforce."""
    if policy.mode is Mode.DRY_RUN or rule.mode is Mode.DRY_RUN:
        return Mode.DRY_RUN
    return Mode.ENFORCE


def is_protected_namespace(policy: Policy, own_namespace: str, namespace: str) -> bool:
    return namespace == own_namespace or _glob_any(policy.protected_namespaces, namespace)


# --- loading and reloading ---


@dataclass
class PolicyStore:
    """The current policy, reloaded from ``path`` when the file changes.

    A new file that fails to parse leaves the previous policy in force; ``on_error`` is told so the
    failure shows up as a metric, and the error is logged once per bad version of the file.
    """

    path: Path | None
    on_error: Callable[[str], None]
    on_load: Callable[[Policy], None]
    policy: Policy | None = None
    _stamp: tuple[float, int] | None = None
    _failed_stamp: tuple[float, int] | None = None

    def load(self) -> bool:
        """Load or reload if the file changed; True when a new policy is in force."""
        if self.path is None:
            if self.policy is None:
                self.policy = Policy()
                self.on_load(self.policy)
                return True
            return False
        stamp: tuple[float, int] | None = None
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp in (self._stamp, self._failed_stamp):
                return False
            text = self.path.read_text(encoding="utf-8")
            policy = parse_policy(text)
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            if stamp is None or stamp != self._failed_stamp:
                log.error(  # noqa: TRY400 - the message says all; no traceback for bad YAML
                    "policy not loaded; keeping the previous one",
                    extra={
                        "policy_file": str(self.path),
                        "error": str(exc),
                        "loaded": self.policy is not None,
                    },
                )
                self.on_error(type(exc).__name__)
            self._failed_stamp = stamp
            return False
        self.policy = policy
        self._stamp = stamp
        self._failed_stamp = None
        log.info(
            "policy loaded",
            extra={"policy_file": str(self.path), "mode": policy.mode.value, "rules": len(policy.rules)},
        )
        self.on_load(policy)
        return True
