"""Fakes for the metrics server's seams (objects, backends, token and access reviews)."""

from __future__ import annotations

from dataclasses import dataclass, field

from teflon.metrics.auth import Attributes, UserInfo
from teflon.metrics.backends import BackendError, Series, Target
from teflon.metrics.config import MetricDef
from teflon.metrics.resources import BadSelector, ResourceType
from teflon.metrics.selectors import SelectorError, parse_selector


@dataclass
class FakeObjects:
    """Objects per (resource, namespace or ""): name -> labels; selectors use the real parser."""

    objects: dict[tuple[str, str], dict[str, dict[str, str]]] = field(default_factory=dict)
    calls: list[tuple[str, str | None, str]] = field(default_factory=list)

    def add(self, resource: str, namespace: str, name: str, **labels: str) -> None:
        self.objects.setdefault((resource, namespace), {})[name] = labels

    async def list_names(self, rtype: ResourceType, namespace: str | None, label_selector: str) -> list[str]:
        self.calls.append((rtype.resource, namespace, label_selector))
        try:
            sel = parse_selector(label_selector)
        except SelectorError as exc:
            raise BadSelector(str(exc)) from exc
        out = []
        for name, labels in self.objects.get((rtype.resource, namespace or ""), {}).items():
            if all(
                (r.op == "=" and labels.get(r.key) == r.values[0])
                or (r.op == "in" and labels.get(r.key) in r.values)
                for r in sel.requirements
            ):
                out.append(name)
        return sorted(out)

    async def exists(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        return name in self.objects.get((rtype.resource, namespace or ""), {})


@dataclass
class FakeBackend:
    """Values per object name; ``fail`` makes every query raise ``BackendError``."""

    values: dict[str, float] = field(default_factory=dict)
    external: list[Series] = field(default_factory=list)
    fail: str = ""
    targets: list[Target] = field(default_factory=list)

    async def fetch(self, metric: MetricDef, target: Target) -> dict[str, float]:
        self.targets.append(target)
        if self.fail:
            raise BackendError(self.fail)
        return {n: v for n, v in self.values.items() if n in target.names}

    async def fetch_external(self, metric: MetricDef, namespace: str, selector: object) -> list[Series]:
        if self.fail:
            raise BackendError(self.fail)
        return list(self.external)

    async def aclose(self) -> None:
        return None


@dataclass
class FakeTokens:
    users: dict[str, UserInfo] = field(default_factory=dict)

    async def review(self, token: str) -> UserInfo | None:
        return self.users.get(token)


@dataclass
class FakeAccess:
    """Allows what ``allow`` says per user name; records every question."""

    allow: set[str] = field(default_factory=set)
    asked: list[tuple[UserInfo, Attributes]] = field(default_factory=list)

    async def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        self.asked.append((user, attrs))
        return (user.name in self.allow, "" if user.name in self.allow else "no RBAC rule")
