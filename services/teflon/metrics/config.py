"""The metrics configuration file: backends and metric definitions.

The chart renders this YAML from ``metrics.config`` into a ConfigMap (``TEFLON_METRICS_CONFIG_FILE``).
Everything is validated at startup so a typo fails the rollout with a message naming the field, instead
of surfacing later as a metric the HPA cannot read.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from teflon.common.wire import RATE_WINDOWS, Priority, Signal
from teflon.metrics.resources import RESOURCE_TYPES

#: Placeholders a PromQL template may use (``{{ .name }}``, matched by ``PLACEHOLDER``); each is
#: substituted with an escaped value by ``teflon.metrics.backends.promql``.
PLACEHOLDERS = frozenset({"namespace", "names", "selector", "window"})
PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z_]+)\s*\}\}")
_METRIC_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.:-]*[a-z0-9])?$")

#: The Sysdig Monitor API host of each SaaS region (Sysdig's own chart, ``monitorApiEndpoint``).
SYSDIG_REGIONS: dict[str, str] = {
    "us1": "https://app.sysdigcloud.com",
    "us2": "https://us2.app.sysdig.com",
    "us3": "https://app.us3.sysdig.com",
    "us4": "https://app.us4.sysdig.com",
    "eu1": "https://eu1.app.sysdig.com",
    "eu2": "https://app.eu2.sysdig.com",
    "au1": "https://app.au1.sysdig.com",
    "in1": "https://app.in1.sysdig.com",
    "me2": "https://app.me2.sysdig.com",
    "jp1": "https://app.jp1.sysdig.com",
}

# The aggregator gives an extension server 5 s; a backend must answer well inside that.
_MAX_TIMEOUT = 4.0

TEFLON_RESOURCES = ("pods", "deployments.apps", "statefulsets.apps", "daemonsets.apps", "namespaces")


class ConfigError(Exception):
    """The metrics configuration is missing, unreadable or invalid; the message says where."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TeflonBackend(_Model):
    """The webhook's rate API, asked on every replica behind ``service``."""

    service: str
    namespace: str
    port_name: str = Field(default="ops", alias="portName")
    timeout_seconds: float = Field(default=2.0, gt=0, le=_MAX_TIMEOUT, alias="timeoutSeconds")


class PrometheusBackend(_Model):
    """Any Prometheus-compatible HTTP API."""

    url: str
    bearer_token_file: str = Field(default="", alias="bearerTokenFile")
    ca_file: str = Field(default="", alias="caFile")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=3.0, gt=0, le=_MAX_TIMEOUT, alias="timeoutSeconds")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return v.rstrip("/")


class SysdigBackend(_Model):
    """The Sysdig Monitor Prometheus-compatible API (``{base}/prometheus/api/v1/query``).

    The base is ``url`` when set (on-premises), else the SaaS ``region``'s.
    """

    region: str = ""
    url: str = ""
    token_file: str = Field(alias="tokenFile")
    ca_file: str = Field(default="", alias="caFile")
    timeout_seconds: float = Field(default=3.0, gt=0, le=_MAX_TIMEOUT, alias="timeoutSeconds")
    max_retries: int = Field(default=2, ge=0, le=5, alias="maxRetries")

    @model_validator(mode="after")
    def _base(self) -> SysdigBackend:
        # url wins over region (an on-premises install), as the chart documents.
        if not (self.region or self.url):
            raise ValueError("set region or url")
        if not self.url and self.region not in SYSDIG_REGIONS:
            raise ValueError(f"unknown region {self.region!r}; known: {', '.join(SYSDIG_REGIONS)}")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self

    @property
    def base_url(self) -> str:
        return (self.url or SYSDIG_REGIONS[self.region]).rstrip("/")


class Backends(_Model):
    """The ``backends:`` section: one optional field per backend, built by ``backends.registry``."""

    teflon: TeflonBackend | None = None
    prometheus: PrometheusBackend | None = None
    sysdig: SysdigBackend | None = None


class EmptyAs(StrEnum):
    ERROR = "error"
    ZERO = "zero"


class MetricDef(_Model):
    """One metric the server offers, for each resource in ``resources``."""

    name: str
    backend: str = Field(description="a field of Backends: teflon, prometheus, sysdig")
    resources: list[str] = Field(min_length=1)
    signal: Signal = Signal.ALERTS
    query: str = ""
    window_seconds: int = Field(default=60, gt=0, alias="windowSeconds")
    cache_seconds: float = Field(default=5.0, ge=0, alias="cacheSeconds")
    empty_as: EmptyAs | None = Field(default=None, alias="emptyAs")
    object_labels: dict[str, str] = Field(default_factory=dict, alias="objectLabels")
    external: bool = False
    min_priority: str = Field(default="", alias="minPriority")
    rule: str = ""

    @field_validator("min_priority")
    @classmethod
    def _priority(cls, v: str) -> str:
        return Priority.parse(v).label if v else ""

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in Backends.model_fields:
            raise ValueError(f"unknown backend {v!r}; known: {', '.join(Backends.model_fields)}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # client-go lower-cases external metric names; one spelling avoids a metric that cannot be found
        if not _METRIC_NAME.match(v):
            raise ValueError("metric names are lower-case letters, digits, '_', '.', ':' and '-'")
        return v

    @model_validator(mode="after")
    def _check(self) -> MetricDef:
        unknown = [r for r in self.resources if r not in RESOURCE_TYPES]
        if unknown:
            raise ValueError(f"unknown resources {unknown}; known: {', '.join(sorted(RESOURCE_TYPES))}")
        if self.backend == "teflon":
            if self.query:
                raise ValueError("the teflon backend takes no query")
            if self.window_seconds not in RATE_WINDOWS:
                windows = " and ".join(map(str, RATE_WINDOWS))
                raise ValueError(f"the teflon backend keeps {windows} second windows only")
            bad = [r for r in self.resources if r not in TEFLON_RESOURCES]
            if bad:
                raise ValueError(f"the teflon backend counts {', '.join(TEFLON_RESOURCES)}, not {bad}")
        else:
            if self.min_priority or self.rule:
                raise ValueError("minPriority and rule filter the teflon backend only; filter in the query")
            if not self.query:
                raise ValueError(f"the {self.backend} backend needs a PromQL query")
            unknown_ph = sorted(set(PLACEHOLDER.findall(self.query)) - PLACEHOLDERS)
            if unknown_ph:
                raise ValueError(
                    f"unknown placeholders {unknown_ph} in query; known: {', '.join(sorted(PLACEHOLDERS))}"
                )
        return self

    @property
    def empty_is_zero(self) -> bool:
        """Whether no data means 0: true for the teflon backend's own counters unless configured."""
        if self.empty_as is not None:
            return self.empty_as is EmptyAs.ZERO
        return self.backend == "teflon"


BUILTIN_METRICS = (
    MetricDef(name="falco_alerts_per_minute", backend="teflon", resources=list(TEFLON_RESOURCES)),
    MetricDef(
        name="falco_alerts_per_minute_5m",
        backend="teflon",
        resources=list(TEFLON_RESOURCES),
        window_seconds=300,
        cache_seconds=15,
    ),
    MetricDef(
        name="teflon_responses_per_minute",
        backend="teflon",
        resources=list(TEFLON_RESOURCES),
        signal=Signal.RESPONSES,
    ),
)


class MetricsConfig(_Model):
    """The whole file. The teflon backend's built-in metrics are added unless defined here by name."""

    backends: Backends = Field(default_factory=Backends)
    metrics: list[MetricDef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> MetricsConfig:
        seen: set[str] = set()
        for m in self.metrics:
            if m.name in seen:
                raise ValueError(f"metric {m.name!r} is defined twice")
            seen.add(m.name)
            if getattr(self.backends, m.backend) is None:
                raise ValueError(f"metric {m.name!r} uses backend {m.backend!r}, which is not configured")
        return self

    def all_metrics(self) -> list[MetricDef]:
        """Configured metrics plus the built-ins of the teflon backend (when it is configured)."""
        out = list(self.metrics)
        if self.backends.teflon is not None:
            names = {m.name for m in out}
            out.extend(m for m in BUILTIN_METRICS if m.name not in names)
        return out


def parse_config(text: str, source: str = "<config>") -> MetricsConfig:
    """Parse and validate the YAML ``text``; raise ``ConfigError`` naming ``source`` and the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping with 'backends' and 'metrics'")
    try:
        return MetricsConfig.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def load_config(path: str) -> MetricsConfig:
    """Read ``path`` (empty: no file, which means no backends and no metrics)."""
    if not path:
        return MetricsConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read metrics config {path}: {exc}") from exc
    return parse_config(text, path)
